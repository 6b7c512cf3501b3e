"""``imgtrans app MODEL``: a local web page to draw or upload an input and see its translation."""

from __future__ import annotations

import argparse

import torch

from imgtrans.app import PALETTES, make_server, palette_for
from imgtrans.app.server import CLIENT_TIMEOUT, MAX_SIDE, MAX_WAITING
from imgtrans.cli.common import MODEL_HELP
from imgtrans.deploy.translators import load_translator


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "app",
        help="serve a web page to draw or upload an input and see the translation (local, no internet needed)",
        description="Serves a page with a drawing canvas (the label palette of the model's dataset: the 12 CMP "
        "Facades classes, or black strokes on white for edges) and an upload box. The translation is the model's "
        "eval-mode output, as `imgtrans translate` gives it.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host is NAME (any port), e.g. behind a proxy; repeatable. "
                   "Otherwise only the address served is answered (a guard against DNS rebinding)")  # fmt: skip
    p.add_argument("--max-waiting", type=int, default=MAX_WAITING,
                   help=f"uploads that may wait while one is translated; more are answered 503 (default {MAX_WAITING})")
    p.add_argument("--client-timeout", type=float, default=CLIENT_TIMEOUT,
                   help=f"seconds a client may stay silent before it is dropped (default {CLIENT_TIMEOUT:g})")
    p.add_argument("--palette", choices=["auto", *PALETTES], default="auto",
                   help="what the canvas paints with (default: guessed from the model's name)")  # fmt: skip
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload accepted, in MiB (default 10)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, help=f"largest image side accepted (default {MAX_SIDE})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--direction", choices=["AtoB", "BtoA"],
                   help="a CycleGAN's generator: AtoB (G_A) or BtoA (G_B) (default: the one the model records)")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: torch's; 1 is best on a busy CPU)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535; got {args.port}")
    if args.max_upload_mb <= 0 or args.max_side < 16:
        raise ValueError("--max-upload-mb must be positive and --max-side at least 16")
    if args.max_waiting < 0 or not args.client_timeout > 0:
        raise ValueError("--max-waiting must be at least 0 and --client-timeout positive")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    if str(args.model).endswith(".onnx"):
        raise ValueError(f"imgtrans app serves PyTorch models; give the model {args.model} was exported from: "
                         "a model folder, run folder or checkpoint")  # fmt: skip
    # The weights checked, as translate checks them; a CycleGAN's generator of --direction.
    translator = load_translator(args.model, device=args.device, direction=args.direction)
    model, device = translator.model, translator.device
    built = getattr(getattr(model, "config", None), "name", "")
    palette = palette_for(str(args.model), built) if args.palette == "auto" else PALETTES[args.palette]
    try:
        server = make_server(model, args.host, args.port, palette=palette, model_name=str(args.model),
                             max_upload_bytes=int(args.max_upload_mb * 2**20), max_side=args.max_side,
                             device=device, allow_hosts=tuple(args.allow_host), max_waiting=args.max_waiting,
                             client_timeout=args.client_timeout)  # fmt: skip
    except OSError as error:
        if "already in use" in str(error):
            raise OSError(f"port {args.port} on {args.host} is already in use; choose another with --port") from None
        raise
    print(f"imgtrans app: {args.model} on {device}, palette {palette.name}"
          + (" (guessed; --palette to choose)" if args.palette == "auto" else ""))  # fmt: skip
    print(f"starting example: {server.example_source}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the page "
              f"(answering Host {server.guard.served()})")
    print(f"open {server.url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("imgtrans app: stopped")
    finally:
        server.server_close()
    return 0

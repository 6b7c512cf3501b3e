"""The ``README.md`` of a saved model: a Hugging Face model card saying what it translates and from what."""

from __future__ import annotations

from imgtrans.store.config import ModelConfig
from imgtrans.registry import PAPER, REFERENCE_REPOSITORY, Published, entry


def model_card(
    config: ModelConfig,
    *,
    parts: tuple[str, ...] | None = None,
    published: Published | None = None,
    model_parts: tuple[str, ...] = (),
) -> str:
    """What a saved model translates, its direction, data, licence and paper, and how to load it.

    Args:
        config: the model's configuration.
        parts: the parts the weights hold, when not the whole model.
        model_parts: all of the model's top-level parts, to say which the weights leave out.
        published: what the weights were published as; without it the card records the
            architecture and leaves the training data to be described.
    """
    arguments, rows = config.arguments, []
    untrained = [p for p in model_parts if parts and p not in parts]
    if published is not None:
        rows.append(("translates", published.task))
    if config.direction is not None:
        rows.append(("direction", f"{config.direction}: the input is the {config.direction[0]} half of the dataset's AB images"))
    if "in_channels" in arguments:
        rows.append(("channels", f"{arguments['in_channels']} -> {arguments.get('out_channels', '?')}"))
    if published is not None:
        source = published.source + (f", `{published.reference_file}` converted to safetensors" if published.reference_file else "")
        rows += [
            ("training resolution", f"{published.resolution} x {published.resolution}"),
            ("training data", published.dataset),
            ("source", source),
            ("license", f"{published.license} (the training data has its own terms of use)"),
        ]
    else:
        rows.append(("training data, license", "not recorded: describe them here before publishing"))
    rows += [
        ("weights", f"{', '.join(parts)} only; not included: {', '.join(untrained) or '-'}" if parts else "the whole model"),
        ("architecture", f"`{config.name}` from the imgtrans registry; arguments in `config.json`"),
    ]
    license_line = [f"license: {published.license}"] if published is not None else []
    tags = ["pipeline_tag: image-to-image", "tags:", "- image-to-image", "- pix2pix", "- imgtrans"]
    load = f'build("{config.name}", pretrained=True)' if published is not None else 'from_pretrained("FOLDER_OR_ORG/NAME")'
    lines = ["---", "library_name: imgtrans", *license_line, *tags, "---", "", f"# {config.name}", ""]
    lines += [entry(config.name).description, "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", "## Use", "", "```python", "import imgtrans", "from imgtrans.inference import translate", ""]
    lines += [f"model = imgtrans.{load}", "y = translate(model, x)  # x: images in [-1, 1], shape (N, C, H, W)", "```", ""]
    lines += ["## Reference", "", f"{published.citation if published else PAPER}. Reference implementation: {REFERENCE_REPOSITORY}.", ""]
    return "\n".join(lines)

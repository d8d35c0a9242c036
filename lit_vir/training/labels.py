"""What a run is, in the words of the paper and of the comparison: read off its resolved config.

`lit-vir compare` labels its rows with these and TensorBoard's HPARAMS tab (`SaveConfigAndEnvironment`) lists
them per run, so a run has one name wherever it is shown.
"""

from __future__ import annotations

__all__ = ["budget_label", "model_label", "precision_label", "recipe_label", "run_hyperparameters"]


ABLATIONS = {  # backbone option → (value that makes the ablation, its name)
    "use_reservoir": (False, "no_reservoir"),
    "memoryless": (True, "memoryless"),
    "readout": ("linear", "linear_readout"),
    "token_order": ("shuffled", "shuffled_tokens"),
}


def is_ridge(config: dict) -> bool:
    """Whether the run's module is the closed-form ridge readout (`configs/readout/ridge.yaml`)."""
    return config["model"].get("class_path", "").rsplit(".", 1)[-1] == "RidgeClassifier"


def model_label(config: dict) -> str:
    """`ViR-3 serial`, `ViR-1 no_reservoir`, `ViR-1 ring`, `ViR-1 ridge`, `ViT-Base-12`, `MobileViT`,
    `ExMobileViT-928`, `timm/resnet18`: the papers' names for a run's backbone, with its ablation controls, its
    reservoir topology when not the reference's, and `ridge` for the closed-form readout."""
    backbone = config["model"]["init_args"]["backbone"]
    name, options = backbone["class_path"].rsplit(".", 1)[-1], backbone.get("init_args") or {}
    depth = options.get("depth")
    if name == "ViR":
        extras = " serial" if options.get("mode") == "serial" else ""
        label = f"ViR-{depth}{extras}{' detach' if extras and options.get('detach') else ''}"
        ablations = [tag for option, (value, tag) in ABLATIONS.items() if options.get(option) == value]
        topology = options.get("topology", "cycle_jumps")
        tags = [
            *ablations,
            *([topology] if topology != "cycle_jumps" else []),
            *(["ridge"] if is_ridge(config) else []),
        ]
        return " ".join([label, *tags])
    if name == "VisionTransformer":
        width = {768: "ViT-Base", 192: "ViT-Small"}.get(options.get("embed_dim"), f"ViT-D{options.get('embed_dim')}")
        return f"{width}-{depth}"
    if name == "TimmModel":
        return f"timm/{options.get('name')}"
    if name == "MobileViT" and options.get("extension") is not None:  # ExMobileViT's classifier on MobileViT
        extension = options["extension"]
        return f"ExMobileViT-{'/'.join(map(str, extension)) if isinstance(extension, list | tuple) else extension}"
    return f"{name}-{depth}" if depth else name


def recipe_label(config: dict) -> str:
    """`closed-form` (the ridge readout: no optimiser), `reference` (the paper's: no schedule, no augmentation),
    `strong` (AdamW + warm-up/cosine + label smoothing, configs/recipe/strong.yaml) or `from-scratch` (strong +
    RandAugment/erasing, MixUp/CutMix, drop-path, EMA: configs/recipe/deit.yaml), read off the saved config."""
    if is_ridge(config):
        return "closed-form"
    module = config["model"]["init_args"]
    data = config.get("data", {}).get("init_args") or {}
    callbacks = config.get("trainer", {}).get("callbacks") or []
    averaging = any("Average" in str(callback.get("class_path", "")) for callback in callbacks)
    if module.get("batch_mixing") or data.get("auto_augment") or data.get("random_erasing") or averaging:
        return "from-scratch"
    return "strong" if module.get("scheduler") else "reference"


def budget_label(config: dict) -> str:
    """A `max_time` budget as `15m`, `1h30m` or `45s`; empty for an epoch-bounded run."""
    limit = (config.get("trainer") or {}).get("max_time")
    if not limit:
        return ""
    if isinstance(limit, dict):
        parts = [limit.get(unit, 0) for unit in ("days", "hours", "minutes", "seconds")]
    else:
        parts = [int(part) for part in str(limit).split(":")]
    days, hours, minutes, seconds = parts
    total = ((24 * days + hours) * 60 + minutes) * 60 + seconds
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes:02d}m" if hours else f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds else "")


def precision_label(config: dict) -> str:
    """`32-true`, `bf16-mixed`, or `bf16-mixed +recurrence` when the reservoir also ran under autocast."""
    precision = str(config.get("trainer", {}).get("precision") or "32-true")
    options = config["model"]["init_args"]["backbone"].get("init_args") or {}
    return f"{precision} +recurrence" if options.get("autocast_recurrence") and precision != "32-true" else precision


def run_hyperparameters(config: dict) -> dict[str, str | float | int | bool]:
    """The columns of TensorBoard's HPARAMS tab: model, dataset, recipe, budget, seed, depth, the reservoir's α,
    topology and N (ViR) and the learning rate — what runs are compared by."""
    backbone = config["model"]["init_args"]["backbone"]
    options = backbone.get("init_args") or {}
    optimizer = (config["model"]["init_args"].get("optimizer") or {}).get("init_args") or {}
    seed = config.get("seed_everything")
    values = {
        "model": model_label(config),
        "dataset": config["data"]["class_path"].rsplit(".", 1)[-1].removesuffix("DataModule"),
        "recipe": recipe_label(config),
        "budget": budget_label(config) or "epochs",
        "precision": precision_label(config),
        "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else -1,
        "depth": options.get("depth"),
        "spectral_radius": options.get("spectral_radius"),
        "topology": options.get("topology"),
        "num_nodes": options.get("num_nodes"),
        "lr": optimizer.get("lr"),
    }
    return {key: value for key, value in values.items() if value is not None}

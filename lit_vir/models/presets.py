"""Named presets: one constructor with other defaults, the preset's values written once, as data.

    @preset(VisionTransformer, embed_dim=192, depth=9, num_heads=12, mlp_ratio=2.0)
    def vit_small() -> VisionTransformer:
        "The from-scratch anchor ..."

`vit_small(...)` is then `VisionTransformer(...)` with those defaults, and any argument given wins over them
(timm's `vit_small_patch16_224`, whose values are a dict merged into the keywords). The preset's signature
is the constructor's with its defaults replaced, so jsonargparse lists and checks the preset's values when a
config names it as its `class_path` (`lit_vir.models.vit_small`), and links the datamodule's `num_classes`,
`image_size` and `in_channels` to it as to the class.

A preset takes its arguments by keyword only (`vit_base(depth=3)`). Its parameters are the constructor's, whose
first is `num_classes`, so a positional `vit_base(3)` would silently build a model for 3 classes where a reader of
an older `vit_base(depth)` meant 3 blocks; it is refused, with the keyword form to use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["constructor_signature", "preset"]

Model = TypeVar("Model")


def constructor_signature(constructor: Callable[..., Any]) -> inspect.Signature:
    """`constructor`'s signature with real types. A class whose `__init__` takes `*args, **kwargs` forwards them to
    its base (the ViT variants: `ReViT(VisionTransformer)` takes `alpha`, `learn_alpha` and the baseline's
    arguments), so its signature is its own keywords among the base's parameters, as jsonargparse resolves it."""
    own = inspect.signature(constructor, eval_str=True)
    variadic = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in own.parameters.values())
    if not (inspect.isclass(constructor) and variadic):
        return own
    base = constructor_signature(constructor.__mro__[1]).parameters.values()
    positional = [p for p in base if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = [p for p in own.parameters.values() if p.kind is p.KEYWORD_ONLY]
    rest = [p for p in base if p.kind is not p.POSITIONAL_OR_KEYWORD and p.name not in own.parameters]
    return own.replace(parameters=[*positional, *keywords, *rest])


def preset(constructor: Callable[..., Model], **defaults: Any) -> Callable[[Callable[[], Any]], Callable[..., Model]]:
    """Decorator: the stub function it decorates becomes the preset of `constructor` with `defaults`.

    The stub gives the name and the docstring, nothing else. The preset keeps its values as `defaults`, so a
    variant's preset can build on them (`revit_small` takes `vit_small.defaults`). The constructor's parameters
    must all be named, or forwarded to a base class whose are (`constructor_signature`): the preset lists them.
    """
    signature = constructor_signature(constructor)
    variadic = [p.name for p in signature.parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = sorted(set(defaults) - set(signature.parameters))
    if variadic or unknown:
        raise TypeError(f"preset of {constructor.__name__}: variadic {variadic}, not its parameters {unknown}.")
    parameters = [
        p.replace(default=defaults.get(p.name, p.default), kind=p.KEYWORD_ONLY) for p in signature.parameters.values()
    ]
    preset_signature = signature.replace(parameters=parameters, return_annotation=constructor)

    def decorate(stub: Callable[[], Any]) -> Callable[..., Model]:
        def build(*args: Any, **kwargs: Any) -> Model:
            if args:
                named = ", ".join(f"{p.name}={value!r}" for p, value in zip(parameters, args, strict=False))
                raise TypeError(
                    f"{stub.__name__}() takes keyword arguments only; got {len(args)} positional, which would be "
                    f"read as {named}. Name each one, e.g. {stub.__name__}({named})."
                )
            return constructor(**(defaults | preset_signature.bind_partial(**kwargs).arguments))

        build.__name__, build.__qualname__, build.__module__ = stub.__name__, stub.__qualname__, stub.__module__
        build.__doc__ = stub.__doc__
        build.__signature__ = preset_signature
        build.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": constructor}
        build.defaults = dict(defaults)
        return build

    return decorate

"""helpers.source: the code listings of the model and training chapters are the real source.

A slice keeps lines of a function's source, in order, unchanged; the slice of the paper's
configuration is the exact text below, and run as code it builds the same network as the
whole function. The chapters' listings are checked against the files they name.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap

import pytest

from helpers import model, source, train
from helpers.config import BASELINE, Config
from tests.conftest import REPO

PAPER = BASELINE  # the reproduction decisions keep the baseline (the model chapter's table)

#: What the model chapter lists: build_model's lines for the paper's network.
PAPER_BUILD_MODEL = '''\
def build_model(config: Config, steps_per_epoch: int = 1) -> keras.Model:
    inputs = keras.Input(shape=(16, 16, 1), name="input")
    x = inputs
    x = _conv_block(x, config, config.filters, config.kernel_size, config.padding, "")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="softmax")(x)
    model = keras.Model(inputs, outputs, name="paper_cnn")
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy"
    model.compile(optimizer=_optimizer(config, steps_per_epoch * config.epochs), loss=loss, metrics=["accuracy"])
    return model
'''

LADDER_LIKE = (PAPER, PAPER.with_(batch_norm=True, second_block_filters=16, augment_shift=0.125, augment_rotation=10.0),
               PAPER.with_(scale="symmetric", third_block_filters=8, second_block_filters=8, label_smoothing=0.1,
                           augment_noise=0.2, schedule="cosine", optimizer="sgd", weight_average=0.99))


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(line == candidate for candidate in it) for line in part)


def run_slice(code: str, name: str):
    """The sliced function, defined in a copy of helpers.model's namespace."""
    namespace = dict(vars(model))
    exec(compile(code, f"<slice of {name}>", "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------- the functions the chapters list

def test_whole_source_is_inspect_getsource() -> None:
    assert source.source(train.fit) == inspect.getsource(train.fit)


def test_the_paper_slice_of_build_model_is_exactly_these_lines() -> None:
    assert source.sliced(model.build_model, {"config": PAPER}) == PAPER_BUILD_MODEL


@pytest.mark.parametrize("config", LADDER_LIKE, ids=["paper", "ladder", "options"])
@pytest.mark.parametrize("function", [model.build_model, model._conv_block, model._optimizer],
                         ids=lambda f: f.__name__)
def test_a_slice_is_lines_of_the_source_in_order(function, config: Config) -> None:
    sliced = source.sliced(function, {"config": config}).splitlines()
    assert is_subsequence(sliced, inspect.getsource(function).splitlines())
    assert len(sliced) <= len(inspect.getsource(function).splitlines())


@pytest.mark.parametrize("config", LADDER_LIKE, ids=["paper", "ladder", "options"])
def test_the_slice_builds_the_same_network_as_the_function(config: Config) -> None:
    sliced_build = run_slice(source.sliced(model.build_model, {"config": config}), "build_model")
    a, b = sliced_build(config, steps_per_epoch=7), model.build_model(config, steps_per_epoch=7)
    assert model.layer_table(a) == model.layer_table(b)
    assert type(a.loss) is type(b.loss) and (a.loss == b.loss if isinstance(a.loss, str) else True)
    assert a.optimizer.get_config() == b.optimizer.get_config()


@pytest.mark.parametrize("config", LADDER_LIKE, ids=["paper", "ladder", "options"])
def test_the_sliced_parts_behave_like_the_whole(config: Config) -> None:
    block = run_slice(source.sliced(model._conv_block, {"config": config}), "_conv_block")
    optimizer = run_slice(source.sliced(model._optimizer, {"config": config}), "_optimizer")
    x = model.keras.Input(shape=(16, 16, 1))
    assert (model.keras.Model(x, block(x, config, 4, 3, "same", "_t")).get_config()["layers"][1:]
            == model.keras.Model(x, model._conv_block(x, config, 4, 3, "same", "_t")).get_config()["layers"][1:])
    assert optimizer(config, 100).get_config() == model._optimizer(config, 100).get_config()


def test_options_that_are_on_keep_their_lines() -> None:
    sliced = source.sliced(model.build_model, {"config": LADDER_LIKE[1]})
    assert "augment_shift" in sliced and "_conv_block(x, config, config.second_block_filters" in sliced
    assert "background = " in sliced  # the shift fills with it
    assert "third_block" not in sliced and "label_smoothing" not in sliced and "distill" not in sliced
    assert "BatchNormalization" in source.sliced(model._conv_block, {"config": LADDER_LIKE[1]})
    assert "BatchNormalization" not in source.sliced(model._conv_block, {"config": PAPER})


def test_the_optimizer_slice_keeps_one_optimizer() -> None:
    sliced = source.sliced(model._optimizer, {"config": PAPER})
    assert "Adam(" in sliced and "SGD" not in sliced and "RMSprop" not in sliced and "raise" not in sliced
    assert "CosineDecay" not in sliced
    assert "SGD(" in source.sliced(model._optimizer, {"config": PAPER.with_(optimizer="sgd")})


# ---------------------------------------------------------------- the slicer's rules, on small functions

def example(a, b, items):
    """A docstring, which a slice drops."""
    unused = a * 2  # no call: dropped when nothing reads it
    logged = print  # a name, not a call: dropped too
    kept = len(items)  # a call: kept
    if a:
        total = 1
    else:
        total = 2
    # about the b branch
    if b > 1:
        total += b
    if items and kept:  # undecidable: `kept` is not in the namespace
        total += 3
    if a:
        return total
    # unreachable when a is true
    raise ValueError(unused)


def test_the_rules_on_a_small_function() -> None:
    sliced = source.sliced(example, {"a": True, "b": 0})
    assert sliced == textwrap.dedent('''\
        def example(a, b, items):
            kept = len(items)  # a call: kept
            if a:
                total = 1
            if items and kept:  # undecidable: `kept` is not in the namespace
                total += 3
            if a:
                return total
        ''')
    assert run_slice_here(sliced, "example")(True, 0, [1]) == example(True, 0, [1])


def test_a_false_test_with_an_else_keeps_both_branches() -> None:
    sliced = source.sliced(example, {"a": False, "b": 5})
    assert "    else:\n        total = 2" in sliced and "total += b" in sliced and "# about the b branch" in sliced
    assert "raise ValueError(unused)" in sliced and "unused = a * 2" in sliced  # read by the raise
    with pytest.raises(ValueError):
        run_slice_here(sliced, "example")(False, 5, [])


def test_an_empty_namespace_keeps_everything_but_the_docstring() -> None:
    whole = inspect.getsource(example).splitlines()
    assert source.sliced(example, {}).splitlines() == [line for line in whole if "A docstring" not in line
                                                       and "logged = print" not in line]


def run_slice_here(code: str, name: str):
    namespace: dict = {}
    exec(compile(code, f"<slice of {name}>", "exec"), namespace)
    return namespace[name]


def test_excerpt_takes_lines_from_one_to_another() -> None:
    code = "def f():\n    a = 1\n    b = 2\n    return a + b\n"
    assert source.excerpt(code, "b =") == "b = 2\nreturn a + b\n"
    assert source.excerpt(code, "a", last="b") == "a = 1\nb = 2\n"
    with pytest.raises(ValueError):
        source.excerpt(code, "c =")


def test_listing_names_the_file_and_its_lines() -> None:
    text = source.listing(source.source(train.fit), train.fit).data
    lines, first = inspect.getsourcelines(train.fit)
    assert text.startswith("```python\n" + inspect.getsource(train.fit))
    assert f"helpers/train.py#L{first}-L{first + len(lines) - 1})" in text and "*Defined in*" in text


# ---------------------------------------------------------------- the chapters

LISTING = re.compile(r"^(`{3,})python\n(.*?)\n\1\n\n\*Defined in\* \[`(helpers/\w+\.py)`\]\([^)]*#L(\d+)-L(\d+)\)"
                     r" \(`(\w+)`\)", re.S)


def listings(chapter: str) -> list[tuple[str, str, int, int, str]]:
    found = []
    for cell in json.loads((REPO / "chapters" / f"{chapter}.ipynb").read_text())["cells"]:
        for output in cell.get("outputs", []):
            match = LISTING.match("".join(output.get("data", {}).get("text/markdown", "")))
            if match:
                found.append((match[2], match[3], int(match[4]), int(match[5]), match[6]))
    return found


@pytest.mark.parametrize("chapter,names", [("model", {"build_model", "_conv_block"}),
                                           ("training", {"build_model", "_optimizer", "fit"})])
def test_the_chapters_list_real_source(chapter: str, names: set[str]) -> None:
    """Each listing is lines of the file it names, in order, within the lines it links to."""
    found = listings(chapter)
    assert {name for *_, name in found} == names
    for code, path, first, last, name in found:
        lines = (REPO / path).read_text().splitlines()[first - 1:last]
        assert lines[0].startswith(f"def {name}("), (path, first, name)
        shown = code.splitlines()
        # an excerpt is dedented: its first line sits `indent` columns deeper in the file
        depth = next(len(line) - len(line.lstrip()) for line in lines if line.strip() == shown[0].strip())
        indent = depth - (len(shown[0]) - len(shown[0].lstrip()))
        assert is_subsequence(shown, [line[indent:] for line in lines if not line[:indent].strip()]), name


def test_the_training_chapter_lists_fit_whole() -> None:
    fit = [code for code, *_, name in listings("training") if name == "fit"]
    assert fit == [inspect.getsource(train.fit).rstrip("\n")]


@pytest.mark.parametrize("chapter", ["model", "training"])
def test_every_visible_code_cell_shows_something(chapter: str) -> None:
    """The cells whose code the page shows end in a table, a figure or a listing."""
    from helpers.notebooks import visible_outputs

    for cell in json.loads((REPO / "chapters" / f"{chapter}.ipynb").read_text())["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "code" and not tags & {"hide-input", "remove-input", "remove-cell"}:
            assert visible_outputs(cell), "".join(cell["source"])


def nested(a, b):
    if a:
        if b:
            return 1
    return 0


def test_a_slice_that_would_empty_a_block_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid Python"):
        source.sliced(nested, {"b": False})
    assert source.sliced(nested, {"a": False}) == "def nested(a, b):\n    return 0\n"

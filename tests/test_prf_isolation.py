"""Python inference functions in a process that runs other things in other threads (a server runs several jobs'
models at once): package code changes nothing process-wide that other threads see.

Its prints go to stderr only for the thread running it, its helper modules are its own without ``sys.path``
changing, different packages run at the same time, and calls into one function are still one at a time.
"""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import re
import sys
import textwrap
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from geoclassify.errors import InferenceError, ModelPackageError
from geoclassify.model.backends.package_code import StdoutRouter
from geoclassify.model.backends.prf import PythonFunctionBackend
from geoclassify.model.packages import open_package

from tests.support import TWO_CLASSES, emd_for, write_dlpk

#: Esri's wrapper form with the calls these tests do not care about.
FUNCTION = """
    import sys
    {imports}


    class {name}:
        def initialize(self, **kwargs):
            {initialize}

        def getParameterInfo(self):
            return []

        def getConfiguration(self, **scalars):
            return {{"tx": 4, "ty": 4}}

        def vectorize(self, **pixelBlocks):
            n = len(pixelBlocks["rasters_pixels"])
            {vectorize}
            return [None] * n, [1.0] * n, [LABEL] * n
"""


def backend(
    path: Path, name: str, files: dict[str, str], imports: str = "", initialize: str = "pass", vectorize: str = "pass"
) -> PythonFunctionBackend:
    source = FUNCTION.format(name=name, imports=imports, initialize=initialize, vectorize=vectorize)
    texts = {f"{name}.py": source, **files}
    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction=f"{name}.py", Classes=TWO_CLASSES)
    package = write_dlpk(path, definition, None, extra={k: textwrap.dedent(v).encode() for k, v in texts.items()})
    return PythonFunctionBackend(open_package(package), trust_code=True)


def chips(n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return np.ones((n, 1, 4, 4), np.float32), np.ones((n, 4, 4), bool)


def voice(word: str, label: str) -> str:
    return f"print('<{word} helper loaded>')\nWORD = {word!r}\nLABEL = {label!r}\n"


@pytest.fixture
def meeting(monkeypatch):
    """A module every thread of a test imports (an installed library, to the functions): where they meet."""
    module = types.ModuleType("geoclassify_test_meeting")
    module.barrier = threading.Barrier(3)
    module.paths = []
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_two_packages_run_at_once_each_with_its_helper_and_prints_while_another_thread_prints(
    tmp_path, meeting, capsys
):
    talk = """
        import _voice  # lazily, while the other package may be importing its own _voice
        import geoclassify_test_meeting as meeting
        meeting.barrier.wait(timeout=20)  # both functions and the third thread are inside at once
        for i in range(40):
            print(f"<{_voice.WORD} {i}>")
        meeting.paths.append(list(sys.path))
        meeting.barrier.wait(timeout=20)
        LABEL = _voice.LABEL"""
    vectorize = textwrap.indent(textwrap.dedent(talk), " " * 12).strip()
    path_before = list(sys.path)
    alpha = backend(tmp_path / "a.dlpk", "Talk", {"_voice.py": voice("alpha", "Intact")}, vectorize=vectorize)
    beta = backend(tmp_path / "b.dlpk", "Talk", {"_voice.py": voice("beta", "Damaged")}, vectorize=vectorize)
    assert alpha.folder != beta.folder

    def third() -> None:
        meeting.barrier.wait(timeout=20)
        for i in range(40):
            print(f"<third {i}>")
        meeting.paths.append(list(sys.path))
        meeting.barrier.wait(timeout=20)

    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(b.classify_chips, *chips(2), batch_size=2) for b in (alpha, beta)]
        printing = pool.submit(third)
        (alpha_classes, _), (beta_classes, _) = [run.result(timeout=60) for run in runs]
        printing.result(timeout=60)

    assert list(alpha_classes) == [0, 0] and list(beta_classes) == [1, 1]  # each got its own _voice
    out, err = capsys.readouterr()
    assert re.findall(r"<[^>]*>", out) == [f"<third {i}>" for i in range(40)]  # the third thread's, all of it
    assert out == "".join(f"<third {i}>\n" for i in range(40))  # and nothing else: no line of the functions
    for word in ("alpha", "beta"):
        assert err.count(f"<{word} helper loaded>") == 1
        assert all(f"<{word} {i}>" in err for i in range(40))
    assert "<third" not in err
    assert len(meeting.paths) == 3 and all(paths == path_before for paths in meeting.paths)  # during
    assert sys.path == path_before  # after
    assert "_voice" not in sys.modules


def test_calls_into_one_function_are_still_one_at_a_time(tmp_path):
    count = """
        self.inside = getattr(self, "inside", 0) + 1
        self.most = max(getattr(self, "most", 0), self.inside)
        time.sleep(0.05)
        self.inside -= 1
        LABEL = "Intact\""""
    slow = backend(
        tmp_path / "slow.dlpk",
        "Slow",
        {},
        imports="import time",
        vectorize=textwrap.indent(textwrap.dedent(count), " " * 12).strip(),
    )
    with ThreadPoolExecutor(3) as pool:
        for run in [pool.submit(slow.classify_chips, *chips(1), batch_size=1) for _ in range(3)]:
            run.result(timeout=30)
    assert slow.instance.most == 1


def test_pickle_and_dataclasses_find_the_functions_and_helpers_classes(tmp_path):
    helper = """
        from dataclasses import dataclass


        @dataclass
        class Threshold:
            value: float = 0.5
    """
    imports = """from dataclasses import dataclass, field

    from _shapes import Threshold

    LABEL = "Intact"


    @dataclass
    class Settings:
        threshold: Threshold = field(default_factory=Threshold)
        names: list = field(default_factory=list)"""
    keeper = backend(
        tmp_path / "keep.dlpk",
        "Keeper",
        {"_shapes.py": helper},
        imports=imports,
        initialize="self.settings = Settings(names=['a'])",
    )
    instance = keeper.instance
    copy = pickle.loads(pickle.dumps(instance))
    assert type(copy) is type(instance) and copy.settings == instance.settings
    assert copy.settings.threshold.value == 0.5 and dataclasses.is_dataclass(copy.settings)
    module = importlib.import_module(type(instance).__module__)  # importable by name while the backend lives
    assert module.Keeper is type(instance) and module.__name__.startswith(keeper._scope.namespace + ".")
    assert type(instance.settings.threshold).__module__ == f"{keeper._scope.namespace}._shapes"


def test_dynamic_imports_threads_and_relative_imports_get_the_packages_own_helpers(tmp_path):
    files = {
        "tools/__init__.py": "from .inner import VALUE\n",
        "tools/inner.py": "from _voice import WORD\nVALUE = WORD * 2\n",
    }
    initialize = """self.dynamic = importlib.import_module("_voice").WORD
            self.nested = importlib.import_module("tools.inner").VALUE
            seen = []

            def later():
                import _voice
                from tools import VALUE
                seen.append((_voice.WORD, VALUE))

            thread = threading.Thread(target=later)
            thread.start()
            thread.join()
            self.from_thread = seen[0]"""
    loaded = [
        backend(
            tmp_path / f"{word}.dlpk",
            "Dyn",
            {**files, "_voice.py": voice(word, "Intact")},
            imports="import importlib\n    import threading\n    LABEL = 'Intact'",
            initialize=initialize,
        )
        for word in ("alpha", "beta")
    ]
    for found, word in zip(loaded, ("alpha", "beta"), strict=True):
        assert found.instance.dynamic == word and found.instance.nested == word * 2
        assert found.instance.from_thread == (word, word * 2)
    assert not {"_voice", "tools", "tools.inner"} & set(sys.modules)  # no bare name stays behind


def test_a_missing_module_of_the_package_is_named_as_the_package_spells_it(tmp_path):
    with pytest.raises(ModelPackageError) as caught:
        backend(
            tmp_path / "gap.dlpk", "Gap", {"tools/__init__.py": "from .missing import thing\n"}, imports="import tools"
        )
    assert "because the package has no module 'tools.missing'" in str(caught.value)


def test_the_stdout_router_is_installed_once_and_answers_as_the_stream_it_serves(tmp_path, monkeypatch):
    out_file = open(tmp_path / "out.txt", "w", encoding="latin-1")  # noqa: SIM115  (closed below)
    err_file = open(tmp_path / "err.txt", "w", encoding="utf-8")  # noqa: SIM115
    monkeypatch.setattr(sys, "stdout", out_file)
    monkeypatch.setattr(sys, "stderr", err_file)
    probe = """print("<from the function>")
            self.seen = (sys.stdout.encoding, sys.stdout.fileno(), sys.stdout.isatty())
            LABEL = "Intact\""""
    chatty = backend(tmp_path / "chatty.dlpk", "Chatty", {}, vectorize=probe)
    router = sys.stdout
    assert isinstance(router, StdoutRouter)
    chatty.classify_chips(*chips(1), batch_size=1)
    assert sys.stdout is router  # installed once
    assert chatty.instance.seen == ("utf-8", err_file.fileno(), False)  # inside: the stream is stderr
    assert (router.encoding, router.fileno(), router.isatty()) == ("latin-1", out_file.fileno(), False)
    print("<from geoclassify>")
    router.flush()
    err_file.flush()
    monkeypatch.undo()
    out_file.close()
    err_file.close()
    assert (tmp_path / "out.txt").read_text(encoding="latin-1") == "<from geoclassify>\n"
    assert (tmp_path / "err.txt").read_text() == "<from the function>\n"


def test_sys_exit_in_the_function_is_a_clean_error(tmp_path):
    quitter = backend(tmp_path / "quit.dlpk", "Quitter", {}, vectorize="sys.exit(3)")
    with pytest.raises(InferenceError) as caught:
        quitter.classify_chips(*chips(1), batch_size=1)
    assert str(caught.value).endswith(
        "the inference function Quitter.py failed in Quitter.vectorize():\n"
        "  in the package's code (innermost last):\n"
        '  File "Quitter.py", line 18, in vectorize\n'
        "    sys.exit(3)\n"
        "SystemExit: 3"
    )


def test_a_folder_one_package_puts_on_sys_path_is_not_where_another_finds_its_helpers(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the Esri idiom below edits it; the test puts it back
    backend(
        tmp_path / "adds.dlpk",
        "Adds",
        {"_only_here.py": "LABEL = 'Intact'\n"},
        imports="import os\n    sys.path.append(os.path.dirname(__file__))\n    from _only_here import LABEL",
    )
    with pytest.raises(ModelPackageError) as caught:
        backend(tmp_path / "lacks.dlpk", "Lacks", {}, imports="from _only_here import LABEL")
    assert "the package has no module '_only_here'" in str(caught.value)
    assert "outside the package and not used" in str(caught.value)

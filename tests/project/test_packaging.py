"""The project installs what it was tested with, and ships as a library people depend on.

Three promises are checked here rather than trusted:
- ``requirements.lock`` (what ``make test`` and ``make demo`` install) satisfies every
  range in ``pyproject.toml`` on CPython 3.11 and 3.12, so the two never drift apart;
- the running environment is exactly the lock (unless ``make test-latest`` runs us);
- the built wheel installs alone as the typed client (aiohttp and msgspec, nothing of
  the server) on the newest CPython here, and a user's mypy checks calls into it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: the Pythons the lock promises (the embedded servers ship wheels for these only)
LOCKED_PYTHONS = ("3.11", "3.12")


def _environment(python: str) -> dict[str, str]:
    """Marker values for a Linux CPython ``python`` (the running one's own when it is that)."""
    if python == f"{sys.version_info.major}.{sys.version_info.minor}":
        return {**default_environment(), "extra": ""}
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "platform_machine": "x86_64", "extra": ""}


def _pins(python: str) -> dict[str, Version]:
    """The lock's pins that apply on ``python`` (the lock is one universal file with markers)."""
    pins: dict[str, Version] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(_environment(python)):
            continue
        (specifier,) = requirement.specifier  # every line is `name==version`
        assert specifier.operator == "==", f"requirements.lock: {line!r} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _requirements(extras: set[str]) -> Iterator[Requirement]:
    """pyproject's dependencies and the named extras, following `dropgate[...]` self-references."""
    project = PYPROJECT["project"]
    seen: set[str] = set()
    todo = [None, *sorted(extras)]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra or "")
        for text in project["dependencies"] if extra is None else project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "dropgate":
                todo.extend(requirement.extras)
            else:
                yield requirement


@pytest.mark.parametrize("python", LOCKED_PYTHONS)
def test_the_lock_satisfies_every_range_in_pyproject(python: str) -> None:
    pins = _pins(python)
    problems = []
    for requirement in _requirements({"dev"}):
        if requirement.marker is not None and not requirement.marker.evaluate(_environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        pinned = pins.get(name)
        if pinned is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} does not admit the locked {name}=={pinned}")
    assert not problems, "pyproject.toml and requirements.lock disagree (run `make lock`):\n" + "\n".join(problems)


def test_every_range_has_an_upper_bound_and_the_lock_holds_hiredis() -> None:
    """A range open at the top is how a new major broke a fresh clone; the lock must also
    hold what an extra like ``redis[hiredis]`` pulls in."""
    unbounded = [str(r) for r in _requirements({"dev"})
                 if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not unbounded, f"ranges without an upper bound: {unbounded}"
    assert "hiredis" in _pins("3.11")


def test_the_running_environment_is_exactly_the_lock() -> None:
    if os.environ.get("DROPGATE_TEST_LATEST"):
        pytest.skip("make test-latest / test-lowest install other releases than the lock")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python in LOCKED_PYTHONS
    wrong = {}
    for name, pinned in _pins(python).items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong[name] = f"missing (locked {pinned})"
            continue
        if installed != pinned:
            wrong[name] = f"{installed} installed, {pinned} locked"
    assert not wrong, f"the virtualenv is not the lock (make installs from requirements.lock): {wrong}"


def test_the_installed_stripe_has_what_the_provider_calls() -> None:
    """``StripeClient(...).v1`` appeared in stripe 12.5; the range's floor must keep it."""
    import stripe

    client = stripe.StripeClient("sk_test_placeholder")
    assert callable(client.v1.checkout.sessions.create)
    assert callable(client.v1.checkout.sessions.expire)
    assert callable(client.v1.refunds.create)
    assert callable(stripe.Webhook.construct_event)


def _attribute_chains(tree: ast.AST, root: str) -> set[tuple[str, ...]]:
    """Every ``root.a.b...`` attribute chain in ``tree`` (``root`` a name or ``self._client``)."""
    chains: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        cursor: ast.expr = node if isinstance(node, ast.Attribute) else ast.Constant(None)
        while isinstance(cursor, ast.Attribute):
            names.append(cursor.attr)
            cursor = cursor.value
        names.reverse()
        if root == "stripe" and isinstance(cursor, ast.Name) and cursor.id == "stripe" and names:
            chains.add(tuple(names))
        elif (root == "self._client" and len(names) > 1 and names[0] == "_client"
              and isinstance(cursor, ast.Name) and cursor.id == "self"):
            chains.add(tuple(names[1:]))
    return chains


def test_the_installed_stripe_has_every_attribute_dropgate_calls() -> None:
    """Read from the source, so a new call is covered the day it is written: every
    ``stripe.X.Y`` in dropgate/, and every ``self._client.v1...`` of the Stripe provider
    on a real ``StripeClient`` (async variants included), exists in the installed stripe;
    and the keyword arguments the provider and the webhook check pass are accepted."""
    import inspect

    import stripe

    client = stripe.StripeClient("sk_test_placeholder", base_addresses={"api": "http://127.0.0.1:1"},
                                 http_client=stripe.AIOHTTPClient(timeout=1.0), max_network_retries=0)
    found: dict[str, set[tuple[str, ...]]] = {"stripe": set(), "self._client": set()}
    for path in sorted((ROOT / "dropgate").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source, str(path))
        found["stripe"] |= _attribute_chains(tree, "stripe")
        if "self._client = stripe.StripeClient(" in source:  # the provider's own client
            found["self._client"] |= _attribute_chains(tree, "self._client")
    assert ("WebhookSignature", "verify_header") in found["stripe"]
    assert ("v1", "checkout", "sessions", "create_async") in found["self._client"]
    missing = []
    for root, base in (("stripe", stripe), ("self._client", client)):
        for chain in sorted(found[root]):
            target: object = base
            for name in chain:
                if not hasattr(target, name):
                    missing.append(f"{root}.{'.'.join(chain)}")
                    break
                target = getattr(target, name)
    assert not missing, f"stripe {stripe.VERSION} lacks what dropgate calls: {missing}"
    verify = inspect.signature(stripe.WebhookSignature.verify_header).parameters
    assert {"payload", "header", "secret", "tolerance"} <= set(verify), verify
    assert isinstance(stripe.Webhook.DEFAULT_TOLERANCE, int)
    error = stripe.InvalidRequestError("m", "param", http_status=400)
    assert (error.http_status, error.param, error.user_message) == (400, "param", "m")
    assert hasattr(error, "_message")  # the provider's log line falls back to it


def _newest_python() -> str:
    """CPython 3.13 when the machine has it (the client's promise reaches it), else the newest
    there is. ``DROPGATE_TEST_CLIENT_PYTHON`` names one; pyenv's versions are looked in too,
    since its shims answer only for the versions it has enabled."""
    named = os.environ.get("DROPGATE_TEST_CLIENT_PYTHON")
    candidates = [named] if named else []
    for minor in ("3.13", "3.12", "3.11"):
        candidates.append(shutil.which(f"python{minor}") or "")
        pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        candidates.extend(str(p) for p in sorted(pyenv_root.glob(f"versions/{minor}*/bin/python{minor}"), reverse=True))
    for found in filter(None, candidates):
        if subprocess.run([found, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return found
    return sys.executable


USER_PROGRAM = '''
from __future__ import annotations

import asyncio

from dropgate.client import AsyncDropgate, DropgateError, NotFound
from dropgate.models.invites import Invite


async def main(url: str, key: str) -> Invite | None:
    async with AsyncDropgate(url, key) as dg:
        try:
            return await dg.invites.get("LAUNCH")
        except NotFound:
            return None
        except DropgateError as exc:
            print(exc.code, exc.status)
            raise


if __name__ == "__main__":
    asyncio.run(main("http://127.0.0.1:1", "k"))
'''

#: The same program with a type error a user's mypy must report: proof the client is typed, not Any.
WRONG_PROGRAM = USER_PROGRAM.replace('dg.invites.get("LAUNCH")', "dg.invites.get(42)")


@pytest.mark.slow
def test_the_wheel_installs_alone_as_a_typed_client(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert not re.search(r"(?i)deprecat|SetuptoolsWarning", built.stdout + built.stderr), built.stdout + built.stderr
    (wheel,) = dist.glob("dropgate-*.whl")
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)],
                           capture_output=True, text=True, check=True).stdout
    for shipped in ("dropgate/py.typed", "engine/lua/", "persistence/migrations/", "licenses/LICENSE"):
        assert shipped in names, f"{shipped} missing from the wheel"
    info = metadata.Distribution.at(Path(str(_wheel_metadata(wheel, tmp_path))))
    assert info.metadata["License-Expression"] == "Apache-2.0"
    assert sorted(Requirement(r).name for r in info.requires or [] if "extra ==" not in r) == ["aiohttp", "msgspec"]

    env_dir = tmp_path / "user-venv"
    python = _newest_python()
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True)
    user_python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(user_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(LOCK), str(wheel)],
        capture_output=True, text=True,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    probe = subprocess.run(
        [str(user_python), "-c",
         "import importlib.util as u, dropgate.client, dropgate.models.offers;"
         "names = ('redis', 'asyncpg', 'stripe', 'aioboto3', 'aiohttp', 'msgspec');"
         "print(sorted(m for m in names if u.find_spec(m)))"],
        capture_output=True, text=True,
    )
    assert probe.returncode == 0, probe.stderr
    print(f"client-only install checked on {python}")
    command = env_dir / "bin" / "dropgate"
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().startswith("dropgate "), version
    serve = subprocess.run([str(command), "serve"], capture_output=True, text=True)
    assert serve.returncode == 2, serve
    assert serve.stderr.count("\n") == 1 and "pip install 'dropgate[server]'" in serve.stderr, serve.stderr
    assert probe.stdout.strip() == "['aiohttp', 'msgspec']"

    good = tmp_path / "good.py"
    good.write_text(USER_PROGRAM)
    wrong = tmp_path / "wrong.py"
    wrong.write_text(WRONG_PROGRAM)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(user_python)]
    checked = subprocess.run([*mypy, str(good)], capture_output=True, text=True, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = subprocess.run([*mypy, str(wrong)], capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 1 and "arg-type" in refused.stdout, refused.stdout + refused.stderr


def _wheel_metadata(wheel: Path, into: Path) -> Path:
    """The wheel's ``.dist-info`` folder, unpacked, to read its metadata as pip will."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if ".dist-info/" in n]
        archive.extractall(into / "unpacked", members)
    (info,) = (into / "unpacked").glob("*.dist-info")
    return info

"""The `.bin` of a provider archive as a launcher script (`--mode launcher`).

A `#!/bin/sh` script that execs the absolute path of the interpreter running `package`
(`sys.executable`) with `-m provider`. Built instantly, but it only works on a machine where that
exact interpreter path exists with this package installed.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from ..errors import PackageError
from .archive import DEFAULT_NAME


def launcher_script(python: str, name: str = DEFAULT_NAME) -> bytes:
    """A `/bin/sh` script that runs this package with the interpreter at `python`.

    `-I` keeps the host's working directory off `sys.path` (a `provider` folder there would
    otherwise shadow this package); the environment is empty under the host anyway.
    """
    return (
        "#!/bin/sh\n"
        f"# {name} launcher, made by `python -m provider package --mode launcher`.\n"
        "# Machine-specific: it runs the interpreter below, which must exist with the package\n"
        "# installed wherever this archive is deployed.\n"
        f'exec {shlex.quote(python)} -I -m provider "$@"\n'
    ).encode()


def build_launcher(python: str, name: str = DEFAULT_NAME) -> bytes:
    """The launcher script for `python`, after checking that it can import this package."""
    if not python or not os.path.isabs(python):
        raise PackageError(f"the interpreter path {python!r} is not absolute")
    try:
        subprocess.run(
            [python, "-I", "-c", "import provider.__main__"],
            env={},
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        raise PackageError(
            f"{python} cannot import the provider with an empty environment "
            f"(install the package into that interpreter: pip install -e .): {detail}"
        ) from None
    return launcher_script(python, name)


__all__ = ["build_launcher", "launcher_script"]

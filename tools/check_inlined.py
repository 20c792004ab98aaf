"""Fails when the built native module calls a SIMD intrinsic as a function.

A kernel helper whose caller lacks `#[target_feature]` cannot inline `core::arch` intrinsics: each
one becomes an out-of-line call and the kernel runs tens of times slower while staying correct (so
no test of values notices). Such calls leave `core::core_arch::…::_mm…` symbols in the library; this
lists them from `nm` and exits 1 if there are any.

    python tools/check_inlined.py [PATH_TO_SO]   (default: the installed llama._llama)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

INTRINSIC = re.compile(r"core::core_arch::(x86|x86_64|aarch64|arm_shared)::[a-z0-9_]+::_?(mm|v)[a-z0-9_]*")


def main() -> int:
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        import llama._llama as native

        path = native.__file__
    nm = shutil.which("nm")
    if nm is None:
        print("check_inlined: `nm` (binutils) not found; skipped", file=sys.stderr)
        return 0
    out = subprocess.run([nm, "-C", path], check=True, capture_output=True, text=True).stdout
    found = sorted({m.group(0) for m in INTRINSIC.finditer(out)})
    if found:
        print(f"{path}: {len(found)} SIMD intrinsics compiled as calls (a kernel lacks #[target_feature]):")
        for name in found:
            print(f"  {name}")
        return 1
    print(f"{path}: every SIMD intrinsic inlined")
    return 0


if __name__ == "__main__":
    sys.exit(main())

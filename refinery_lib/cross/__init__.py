"""The cross builder's parts: zig as the target's C/C++ toolchain, the target Python's headers
and sysconfig, and the backend settings (setuptools variables, a meson cross file, a CMake
toolchain file) that make a build on this host produce wheels for the target."""

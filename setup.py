"""Builds fastpass._C by driving CMakeLists.txt with ninja (CPU always, CUDA when nvcc is found)."""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        args = [
            "cmake", str(ROOT), "-G", "Ninja",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('FASTPASS_BUILD_TYPE', 'Release')}",
            f"-DFASTPASS_CUDA={os.environ.get('FASTPASS_CUDA', 'AUTO')}",
        ]
        archs = os.environ.get("FASTPASS_CUDA_ARCHS")  # e.g. "90a": only the GPU at hand (default 80;90a)
        if archs:
            args.append(f"-DFASTPASS_CUDA_ARCHS={archs}")
        subprocess.check_call(args, cwd=build_dir)
        jobs = os.environ.get("FASTPASS_JOBS", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "--build", ".", "-j", jobs], cwd=build_dir)


setup(
    packages=find_packages(include=["fastpass", "fastpass.*"]) + ["fastpass.triton_kernels"],
    package_dir={"fastpass.triton_kernels": "triton_kernels"},
    ext_modules=[CMakeExtension("fastpass._C")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)

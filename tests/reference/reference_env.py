"""What every reference script checks first: the torch / torchvision it was written against.

The C++ tests compare against values these scripts compute; another torchvision can change
those values (sampling, defaults, weights layout), so a different version stops the script with
a message instead of producing references the code was never checked against. Versions are read
from the installed metadata, without importing the packages.
"""
import importlib.metadata
import sys


def require(**expected):
    """require(torch="1.13", torchvision="0.14"): each installed version must start with the prefix."""
    for package, prefix in expected.items():
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"{sys.argv[0]}: {package} is not installed (written for {package} {prefix})")
        if found != prefix and not found.startswith(prefix + "."):
            sys.exit(f"{sys.argv[0]}: written for {package} {prefix}, found {found}; "
                     "check the references against the new version before changing this pin")

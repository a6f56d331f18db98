import sys

from reconciler.controlplane.daemon import serve

if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m reconciler.controlplane serve")
    sys.exit(serve())

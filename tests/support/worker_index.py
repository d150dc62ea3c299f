"""Run in a bare interpreter (``python -I -S worker_index.py APP WORKER``): index APP with the Python worker's own
loader (``azure_functions_runtime.loader.index_function_app``), seeing only APP, its ``.python_packages`` and
the worker; print each function's bindings and the modules indexing imported, as JSON."""

import importlib
import json
import os
import sys


def main() -> None:
    app, worker = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    sys.path[:0] = [app, os.path.join(app, ".python_packages", "lib", "site-packages"), worker]
    os.chdir(app)
    loader = importlib.import_module("azure_functions_runtime.loader")  # on the path only now
    functions = loader.index_function_app(os.path.join(app, "function_app.py"))
    found = {f.get_function_name(): [b.get_dict_repr() for b in f.get_bindings()] for f in functions}
    print(json.dumps({"functions": found, "modules": sorted({m.split(".")[0] for m in sys.modules})}, default=str))


if __name__ == "__main__":
    main()

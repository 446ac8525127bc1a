"""Reading a trained KAN: edge and node importance and pruning (``importance``), closed-form fits of
edges (``fit``, ``symbolic``), the network as a sympy formula (``formula``) and its activations drawn
like the network (``plot``).  ``python -m kanpde.interpret RUN_DIR`` does it for a finished run."""

"""The files kanpde writes and reads: the results record (``results.h5``), the model file
(``model.pt``), the on-disk cache of reference solutions, and atomic writes for all of them."""
from kanpde.io.files import atomic_path
from kanpde.io.model_file import load_model, save_model
from kanpde.io.results import read_results, write_results

__all__ = ["atomic_path", "load_model", "read_results", "save_model", "write_results"]

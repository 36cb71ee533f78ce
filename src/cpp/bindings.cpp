// The only file that includes pybind11. It checks every array at the boundary, converts the
// arguments to plain C++, releases the GIL and calls the core in src/cpp/datapool/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>

#include "datapool/fps.hpp"
#include "datapool/kernels.hpp"

namespace py = pybind11;

namespace {

struct MatrixView {
  const float* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
};

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

// A 2-D, C-contiguous float32 matrix, or a clear TypeError / ValueError that says how to fix it.
MatrixView check_matrix(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(std::string(name) + " must be float32, got " +
                         std::string(py::str(a.dtype())) + "; try `" + name +
                         ".astype(np.float32)`");
  }
  if (a.ndim() != 2) {
    throw py::value_error(std::string(name) + " must be 2-D (rows x dimension), got shape " +
                          shape_str(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) +
                          " rows must be C-contiguous, try `np.ascontiguousarray(" + name + ")`");
  }
  MatrixView v;
  v.data = static_cast<const float*>(a.data());
  v.rows = static_cast<std::size_t>(a.shape(0));
  v.cols = static_cast<std::size_t>(a.shape(1));
  return v;
}

void check_finite(const MatrixView& v, const char* name) {
  const std::size_t total = v.rows * v.cols;
  for (std::size_t i = 0; i < total; ++i) {
    if (!std::isfinite(v.data[i])) {
      throw py::value_error(std::string(name) + " holds a NaN or infinite value at row " +
                            std::to_string(i / v.cols) + ", column " +
                            std::to_string(i % v.cols) + "; clean or drop that row first");
    }
  }
}

// Polls for Ctrl-C from the thread that released the GIL. A pending signal leaves its Python
// error set on this thread; the caller re-raises it once the GIL is back.
bool python_interrupted() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

datapool::Algorithm parse_algorithm(const std::string& name) {
  if (name == "auto") return datapool::Algorithm::Auto;
  if (name == "brute") return datapool::Algorithm::Brute;
  if (name == "pruned") return datapool::Algorithm::Pruned;
  throw py::value_error("algorithm must be 'auto', 'pruned' or 'brute', got '" + name + "'");
}

py::tuple fps_select(const py::array& candidates, py::ssize_t n_samples, const py::object& selected,
                     double min_distance, py::ssize_t threads, const std::string& algorithm,
                     const py::object& kernels) {
  const MatrixView cand = check_matrix(candidates, "candidates");
  MatrixView sel;
  sel.cols = cand.cols;
  if (!selected.is_none()) {
    sel = check_matrix(selected.cast<py::array>(), "selected");
    if (sel.rows > 0 && sel.cols != cand.cols) {
      throw py::value_error("selected has dimension " + std::to_string(sel.cols) +
                            " but candidates have " + std::to_string(cand.cols) +
                            "; both must come from the same model");
    }
  }
  if (n_samples < 0) throw py::value_error("n_samples must be >= 0");
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 means all cores)");
  if (!(min_distance >= 0.0) || !std::isfinite(min_distance)) {
    throw py::value_error("min_distance must be a finite number >= 0");
  }
  if (cand.rows > 0 && cand.cols == 0) {
    throw py::value_error("candidates must have at least one column");
  }
  datapool::FpsOptions opt;
  opt.n_samples = static_cast<std::size_t>(n_samples);
  opt.min_distance = static_cast<float>(min_distance);
  opt.threads = static_cast<std::size_t>(threads);
  opt.algorithm = parse_algorithm(algorithm);
  if (!kernels.is_none()) {
    const std::string name = kernels.cast<std::string>();
    opt.kernels = datapool::kernels_by_name(name.c_str());
    if (opt.kernels == nullptr) {
      throw py::value_error("kernels '" + name + "' are not available on this CPU; available: " +
                            datapool::supported_kernels());
    }
  }
  check_finite(cand, "candidates");
  check_finite(sel, "selected");

  datapool::FpsResult result;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      result = datapool::fps_select(cand.data, cand.rows, cand.cols, sel.data, sel.rows, opt,
                                    python_interrupted);
    } catch (const datapool::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();

  // New arrays that own copies of the result (one entry per pick).
  const auto k = static_cast<py::ssize_t>(result.indices.size());
  py::array_t<std::int64_t> indices(k);
  py::array_t<float> distances(k);
  std::copy(result.indices.begin(), result.indices.end(), indices.mutable_data());
  std::copy(result.min_distances.begin(), result.min_distances.end(), distances.mutable_data());
  py::dict info;
  info["evaluations"] = result.evaluations;
  info["center_evaluations"] = result.center_evaluations;
  info["algorithm"] = result.algorithm;
  info["kernels"] = result.kernels;
  return py::make_tuple(std::move(indices), std::move(distances), std::move(info));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "datapool's C++ core: farthest-point selection.";
  m.attr("__version__") = DATAPOOL_VERSION;
  m.attr("SIMD") = datapool::best_kernels().name;
  m.attr("SIMD_AVAILABLE") = datapool::supported_kernels();
  m.attr("HAS_CUDA") = false;
  m.attr("HARDWARE_THREADS") = std::thread::hardware_concurrency();

  m.def("fps_select", &fps_select, py::arg("candidates"), py::arg("n_samples"),
        py::arg("selected") = py::none(), py::arg("min_distance") = 0.0, py::arg("threads") = 0,
        py::arg("algorithm") = "auto", py::arg("kernels") = py::none(),
        R"doc(Exact farthest-point (k-center greedy) selection.

candidates: float32 (N, d), C-contiguous. selected: float32 (M, d) or None; its rows count as
already picked. Picks at most n_samples candidates; stops early when the farthest remaining one is
closer than min_distance, or at distance 0. Ties go to the lowest index. threads: 0 for every
core. algorithm: 'auto', 'pruned' or 'brute'. kernels: None for the best this CPU supports, or
'scalar' / 'avx2' / 'avx512'.

Returns (indices, min_distances, info): new int64 and float32 arrays of the picks in order and each
pick's Euclidean min-distance when picked (+inf for the first pick of an empty pool), and a dict
with evaluations, center_evaluations, algorithm and kernels. The GIL is released while it
computes; Ctrl-C stops it.)doc");
}

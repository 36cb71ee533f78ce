// The only file that includes pybind11. It checks every array at the boundary, converts the
// arguments to plain C++, releases the GIL and calls the core in src/cpp/datapool/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "datapool/fps.hpp"
#if defined(DATAPOOL_CUDA)
#include "datapool/fps_cuda.hpp"
#endif
#include "datapool/kernels.hpp"
#include "datapool/pack.hpp"
#include "datapool/csv_write.hpp"
#include "datapool/pool_csv.hpp"
#include "datapool/strategies.hpp"

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

// The interrupt check with a caller's progress: progress(the picks so far, *done) with the GIL,
// each time the check runs (about every 50 ms, on the thread that released the GIL). An error it
// raises stops the selection, as Ctrl-C does, and is raised.
datapool::InterruptCheck with_progress(const py::object& progress, const std::size_t& done) {
  if (progress.is_none()) return python_interrupted;
  return [&progress, &done] {
    py::gil_scoped_acquire gil;
    try {
      progress(done);
    } catch (py::error_already_set& e) {
      e.restore();
      return true;
    }
    return PyErr_CheckSignals() != 0;
  };
}

// threads: 0 for every core, else at most eight per hardware thread (at least 64). More only
// costs memory and scheduling: 100000 threads took 17 GB.
void check_threads(py::ssize_t threads) {
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 means all cores)");
  const std::size_t limit = std::max<std::size_t>(64, 8 * std::thread::hardware_concurrency());
  if (static_cast<std::size_t>(threads) > limit) {
    throw py::value_error("threads=" + std::to_string(threads) + " is far past this machine's " +
                          std::to_string(std::thread::hardware_concurrency()) +
                          " hardware threads; use at most " + std::to_string(limit) +
                          ", or 0 for all cores");
  }
}

datapool::Algorithm parse_algorithm(const std::string& name) {
  if (name == "auto") return datapool::Algorithm::Auto;
  if (name == "brute") return datapool::Algorithm::Brute;
  if (name == "pruned") return datapool::Algorithm::Pruned;
  throw py::value_error("algorithm must be 'auto', 'pruned' or 'brute', got '" + name + "'");
}

// The checks and options shared by fps_select and fps_select_cuda.
struct FpsCall {
  MatrixView cand, sel;
  datapool::FpsOptions opt;
};

FpsCall check_fps_call(const py::array& candidates, py::ssize_t n_samples,
                       const py::object& selected, double min_distance) {
  FpsCall call;
  call.cand = check_matrix(candidates, "candidates");
  call.sel.cols = call.cand.cols;
  if (!selected.is_none()) {
    call.sel = check_matrix(selected.cast<py::array>(), "selected");
    if (call.sel.rows > 0 && call.sel.cols != call.cand.cols) {
      throw py::value_error("selected has dimension " + std::to_string(call.sel.cols) +
                            " but candidates have " + std::to_string(call.cand.cols) +
                            "; both must come from the same model");
    }
  }
  if (n_samples < 0) throw py::value_error("n_samples must be >= 0");
  if (!(min_distance >= 0.0) || !std::isfinite(min_distance)) {
    throw py::value_error("min_distance must be a finite number >= 0");
  }
  if (call.cand.rows > 0 && call.cand.cols == 0) {
    throw py::value_error("candidates must have at least one column");
  }
  call.opt.n_samples = static_cast<std::size_t>(n_samples);
  call.opt.min_distance = static_cast<float>(min_distance);
  return call;
}

// Runs `select` without the GIL; a Ctrl-C seen by python_interrupted comes back as Python's.
template <typename Select>
datapool::FpsResult run_fps(Select&& select) {
  datapool::FpsResult result;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      result = select();
    } catch (const datapool::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
  return result;
}

// (indices, min_distances, info): new arrays that own copies of the result, one entry per pick.
py::tuple fps_tuple(const datapool::FpsResult& result, bool screened) {
  const auto k = static_cast<py::ssize_t>(result.indices.size());
  py::array_t<std::int64_t> indices(k);
  py::array_t<float> distances(k);
  std::copy(result.indices.begin(), result.indices.end(), indices.mutable_data());
  std::copy(result.min_distances.begin(), result.min_distances.end(), distances.mutable_data());
  py::dict info;
  info["evaluations"] = result.evaluations;
  info["center_evaluations"] = result.center_evaluations;
  if (screened) {
    info["rechecks"] = result.rechecks;
    info["screen"] = result.screen;
  }
  info["algorithm"] = result.algorithm;
  info["kernels"] = result.kernels;
  return py::make_tuple(std::move(indices), std::move(distances), std::move(info));
}

// kernels: None (the best this CPU supports) or a kernel set's name, which must be available.
const datapool::Kernels* parse_kernels(const py::object& kernels) {
  if (kernels.is_none()) return nullptr;
  const std::string name = kernels.cast<std::string>();
  const datapool::Kernels* k = datapool::kernels_by_name(name.c_str());
  if (k == nullptr)
    throw py::value_error("kernels '" + name + "' are not available on this CPU; available: " +
                          datapool::supported_kernels());
  return k;
}

// screen: None (where it pays), True or False.
datapool::Screen parse_screen(const py::object& screen) {
  if (screen.is_none()) return datapool::Screen::Auto;
  return screen.cast<bool>() ? datapool::Screen::On : datapool::Screen::Off;
}

py::tuple fps_select(const py::array& candidates, py::ssize_t n_samples, const py::object& selected,
                     double min_distance, py::ssize_t threads, const std::string& algorithm,
                     const py::object& kernels, const py::object& screen,
                     const py::object& progress) {
  FpsCall call = check_fps_call(candidates, n_samples, selected, min_distance);
  check_threads(threads);
  datapool::FpsOptions& opt = call.opt;
  opt.threads = static_cast<std::size_t>(threads);
  opt.algorithm = parse_algorithm(algorithm);
  opt.screen = parse_screen(screen);
  opt.kernels = parse_kernels(kernels);
  check_finite(call.cand, "candidates");
  check_finite(call.sel, "selected");
  const MatrixView &cand = call.cand, &sel = call.sel;
  std::size_t done = 0;
  opt.picks_done = &done;
  const datapool::InterruptCheck check = with_progress(progress, done);
  return fps_tuple(run_fps([&] {
                     return datapool::fps_select(cand.data, cand.rows, cand.cols, sel.data,
                                                 sel.rows, opt, check);
                   }),
                   true);
}

// fps_select on a CUDA GPU (src/cpp/datapool/fps_cuda.hpp). Built without CUDA, it raises.
py::tuple fps_select_cuda(const py::array& candidates, py::ssize_t n_samples,
                          const py::object& selected, double min_distance, int device) {
#if defined(DATAPOOL_CUDA)
  const FpsCall call = check_fps_call(candidates, n_samples, selected, min_distance);
  check_finite(call.cand, "candidates");
  check_finite(call.sel, "selected");
  const MatrixView &cand = call.cand, &sel = call.sel;
  return fps_tuple(run_fps([&] {
                     return datapool::fps_select_cuda(cand.data, cand.rows, cand.cols, sel.data,
                                                      sel.rows, call.opt, python_interrupted,
                                                      device);
                   }),
                   false);
#else
  (void)candidates, (void)n_samples, (void)selected, (void)min_distance, (void)device;
  throw std::runtime_error("this build of datapool has no CUDA support (_core.HAS_CUDA is False)");
#endif
}

// A 1-D C-contiguous array of dtype T and length n, or a clear error.
template <typename T>
const T* check_vector(const py::array& a, const char* name, const char* dtype, std::size_t n) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must be " + dtype + ", got " +
                         std::string(py::str(a.dtype())) + "; try `np.asarray(" + name +
                         ", dtype=np." + dtype + ")`");
  }
  if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n ||
      !(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be a contiguous vector of " +
                          std::to_string(n) + " entries, got shape " + shape_str(a));
  }
  return static_cast<const T*>(a.data());
}

py::tuple combined_select(const py::array& candidates, py::ssize_t n_samples,
                          const py::object& selected, const py::array& weight,
                          const py::array& mask, const py::list& balances, double diversity,
                          double min_distance, py::ssize_t threads, const py::object& kernels,
                          const py::object& screen, const py::object& progress) {
  const MatrixView cand = check_matrix(candidates, "candidates");
  MatrixView sel;
  sel.cols = cand.cols;
  if (!selected.is_none()) {
    sel = check_matrix(selected.cast<py::array>(), "selected");
    if (sel.rows > 0 && sel.cols != cand.cols)
      throw py::value_error("selected and candidates must have the same dimension");
  }
  if (n_samples < 0) throw py::value_error("n_samples must be >= 0");
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 means all cores)");
  if (!(diversity > 0.0) || !std::isfinite(diversity))
    throw py::value_error("diversity (its strength) must be a finite number > 0");
  if (!(min_distance >= 0.0) || !std::isfinite(min_distance))
    throw py::value_error("min_distance must be a finite number >= 0");
  const std::size_t n = cand.rows;
  const double* w = check_vector<double>(weight, "weight", "float64", n);
  const std::uint8_t* mk = check_vector<std::uint8_t>(mask, "mask", "uint8", n);
  std::vector<datapool::BalanceInput> bal;
  for (const auto& item : balances) {
    const auto t = item.cast<py::tuple>();
    if (t.size() != 4) throw py::value_error("each balance is (P, counts, target, strength)");
    datapool::BalanceInput b;
    const MatrixView P = check_matrix(t[0].cast<py::array>(), "balance P");
    if (P.rows != n) throw py::value_error("balance P must have one row per candidate");
    b.P = P.data;
    b.C = P.cols;
    const double* c = check_vector<double>(t[1].cast<py::array>(), "counts", "float64", P.cols);
    const double* g = check_vector<double>(t[2].cast<py::array>(), "target", "float64", P.cols);
    b.counts.assign(c, c + P.cols);
    b.target.assign(g, g + P.cols);
    b.strength = t[3].cast<double>();
    bal.push_back(std::move(b));
  }
  datapool::CombinedOptions opt;
  opt.n_samples = static_cast<std::size_t>(n_samples);
  opt.diversity = diversity;
  opt.min_distance = static_cast<float>(min_distance);
  opt.threads = static_cast<std::size_t>(threads);
  opt.screen = parse_screen(screen);
  opt.kernels = parse_kernels(kernels);
  check_finite(cand, "candidates");
  check_finite(sel, "selected");
  std::size_t done = 0;
  opt.picks_done = &done;
  const datapool::InterruptCheck check = with_progress(progress, done);
  datapool::CombinedResult r;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      r = datapool::combined_select(cand.data, n, cand.cols, sel.data, sel.rows, w, mk, bal, opt,
                                    check);
    } catch (const datapool::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
  const auto k = static_cast<py::ssize_t>(r.indices.size());
  const auto nb = static_cast<py::ssize_t>(bal.size());
  py::array_t<std::int64_t> idx(k);
  py::array_t<float> dist(k);
  py::array_t<double> scores(k);
  py::array_t<double> terms({k, nb});
  std::copy(r.indices.begin(), r.indices.end(), idx.mutable_data());
  std::copy(r.min_distances.begin(), r.min_distances.end(), dist.mutable_data());
  std::copy(r.scores.begin(), r.scores.end(), scores.mutable_data());
  std::copy(r.balance_terms.begin(), r.balance_terms.end(), terms.mutable_data());
  py::dict info;
  info["evaluations"] = r.evaluations;
  info["rechecks"] = r.rechecks;
  info["screen"] = r.screen;
  info["kernels"] = r.kernels;
  return py::make_tuple(std::move(idx), std::move(dist), std::move(scores), std::move(terms),
                        r.stop_reason, std::move(info));
}

// A float32 vector of 3 (any stride), read into `dst`.
void read_vec3(const py::array& a, const char* name, float* dst) {
  if (!a.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(std::string(name) + " must be float32, got " +
                         std::string(py::str(a.dtype())) + "; try `np.asarray(" + name +
                         ", dtype=np.float32)`");
  }
  if (a.ndim() != 1 || a.shape(0) != 3) {
    throw py::value_error(std::string(name) +
                          " must have shape (3,) (one value per RGB channel), got " + shape_str(a));
  }
  const char* p = static_cast<const char*>(a.data());
  for (py::ssize_t c = 0; c < 3; ++c) std::memcpy(dst + c, p + c * a.strides(0), sizeof(float));
}

// One uint8 frame: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), each row contiguous.
datapool::FrameView check_frame(const py::handle& obj, std::size_t i) {
  const std::string name = "frames[" + std::to_string(i) + "]";
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(name + " must be a numpy uint8 array, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))) +
                         "; try `np.asarray(frame, dtype=np.uint8)`");
  }
  const auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<std::uint8_t>())) {
    throw py::type_error(name + " must be uint8 (0..255), got " + std::string(py::str(a.dtype())) +
                         "; try `np.clip(" + name + ", 0, 255).astype(np.uint8)`");
  }
  const py::ssize_t channels = a.ndim() == 3 ? a.shape(2) : 1;
  if ((a.ndim() != 2 && a.ndim() != 3) || (channels != 1 && channels != 3 && channels != 4)) {
    throw py::value_error(
        name + " must be (H, W) gray, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, got shape " +
        shape_str(a) + "; convert it to RGB first");
  }
  if (a.shape(0) < 1 || a.shape(1) < 1) {
    throw py::value_error(name + " is empty (shape " + shape_str(a) + "); drop it from the batch");
  }
  // Each row must be contiguous: channels 1 byte apart, pixels `channels` bytes apart. Rows may be
  // any distance apart (a padded PyAV plane, a crop, a flipped view). Strides of length-1 axes
  // do not matter.
  const bool channels_ok = a.ndim() == 2 || channels == 1 || a.strides(2) == 1;
  const bool pixels_ok = a.shape(1) == 1 || a.strides(1) == channels;
  if (!channels_ok || !pixels_ok) {
    throw py::value_error(name + " rows must be contiguous (pixels " + std::to_string(channels) +
                          " bytes apart, got strides " + std::to_string(a.strides(1)) +
                          (a.ndim() == 3 ? ", " + std::to_string(a.strides(2)) : std::string()) +
                          "); try `np.ascontiguousarray(" + name + ")`");
  }
  datapool::FrameView f;
  f.data = static_cast<const std::uint8_t*>(a.data());
  f.height = static_cast<std::size_t>(a.shape(0));
  f.width = static_cast<std::size_t>(a.shape(1));
  f.channels = static_cast<std::size_t>(channels);
  f.row_stride = a.shape(0) == 1 ? 0 : static_cast<std::ptrdiff_t>(a.strides(0));
  return f;
}

void pack_frames(const py::sequence& frames, py::array out, const py::array& scale,
                 const py::array& shift, py::ssize_t threads) {
  if (!out.dtype().is(py::dtype::of<float>())) {
    throw py::type_error("out must be float32, got " + std::string(py::str(out.dtype())) +
                         "; allocate it with `np.empty((N, 3, H, W), dtype=np.float32)`");
  }
  if (out.ndim() != 4 || out.shape(1) != 3 || out.shape(2) < 1 || out.shape(3) < 1) {
    throw py::value_error("out must be (N, 3, H, W) with H, W >= 1, got shape " + shape_str(out));
  }
  if (!(out.flags() & py::array::c_style)) {
    throw py::value_error(
        "out must be C-contiguous; allocate it with `np.empty((N, 3, H, W), "
        "dtype=np.float32)`");
  }
  if (!out.writeable()) throw py::value_error("out is read-only; pass a writeable array");
  check_threads(threads);
  datapool::PackOptions opt;
  read_vec3(scale, "scale", opt.scale);
  read_vec3(shift, "shift", opt.shift);
  opt.out_height = static_cast<std::size_t>(out.shape(2));
  opt.out_width = static_cast<std::size_t>(out.shape(3));
  opt.threads = static_cast<std::size_t>(threads);

  if (py::isinstance<py::array>(frames) && py::reinterpret_borrow<py::array>(frames).ndim() != 4) {
    throw py::value_error(
        "frames must be a list of frames (or one (N, H, W, C) array), got an array of shape " +
        shape_str(py::reinterpret_borrow<py::array>(frames)) +
        "; wrap a single frame in a list: `[frame]`");
  }
  const std::size_t n = py::len(frames);
  if (n > static_cast<std::size_t>(out.shape(0))) {
    throw py::value_error("out holds " + std::to_string(out.shape(0)) + " frames but " +
                          std::to_string(n) + " were given; allocate out with N >= len(frames)");
  }
  // Keep a reference to every array while the GIL is released.
  std::vector<py::object> keep;
  std::vector<datapool::FrameView> views;
  keep.reserve(n);
  views.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    py::object item = frames[i];
    views.push_back(check_frame(item, i));
    keep.push_back(std::move(item));
  }
  float* dst = static_cast<float*>(out.mutable_data());
  py::gil_scoped_release release;
  datapool::pack_frames(views.data(), n, dst, opt);
}

// The pool CSV as (names, embeddings, labels); shared by read_pool_csv and parse_pool_csv.
py::tuple pool_csv_result(datapool::PoolCsv&& csv) {
  const auto n = static_cast<py::ssize_t>(csv.rows);
  const auto d = static_cast<py::ssize_t>(csv.dim);
  py::list names(n);
  for (py::ssize_t i = 0; i < n; ++i) {
    const auto b = csv.name_offsets[static_cast<std::size_t>(i)];
    const auto e = csv.name_offsets[static_cast<std::size_t>(i) + 1];
    PyObject* s = PyUnicode_DecodeUTF8(csv.names.data() + b, static_cast<py::ssize_t>(e - b),
                                       "strict");
    if (s == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(names.ptr(), i, s);
  }
  // The embeddings buffer moves into the array (a capsule frees it); labels are copied.
  float* emb = csv.embeddings.release();
  py::capsule owner(emb, [](void* p) { delete[] static_cast<float*>(p); });
  py::array_t<float> embeddings({n, d}, {d * static_cast<py::ssize_t>(sizeof(float)),
                                         static_cast<py::ssize_t>(sizeof(float))},
                                emb, owner);
  py::array_t<std::int64_t> labels(n);
  if (n > 0) std::memcpy(labels.mutable_data(), csv.labels.get(), csv.rows * sizeof(std::int64_t));
  return py::make_tuple(std::move(names), std::move(embeddings), std::move(labels));
}

datapool::CsvOptions csv_options(py::ssize_t dim, py::ssize_t threads, py::ssize_t chunk_bytes,
                                 py::ssize_t body_start = 0, py::ssize_t body_end = 0) {
  if (dim < -1) throw py::value_error("dim must be >= 0, or -1 for any");
  if (body_start < 0 || body_end < 0) {
    throw py::value_error("body_start and body_end must be >= 0 (0: after the header, the end)");
  }
  check_threads(threads);
  if (chunk_bytes < 0) throw py::value_error("chunk_bytes must be >= 0 (0 means automatic)");
  datapool::CsvOptions opt;
  opt.expected_dim = dim;
  opt.threads = static_cast<std::size_t>(threads);
  opt.chunk_bytes = static_cast<std::size_t>(chunk_bytes);
  opt.body_start = static_cast<std::size_t>(body_start);
  opt.body_end = static_cast<std::size_t>(body_end);
  return opt;
}

template <class Parse>
py::tuple run_csv_parse(const Parse& parse) {
  datapool::PoolCsv csv;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      csv = parse();
    } catch (const datapool::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
  return pool_csv_result(std::move(csv));
}

py::tuple read_pool_csv(const py::object& path, py::ssize_t dim, py::ssize_t threads,
                        py::ssize_t chunk_bytes, py::ssize_t body_start, py::ssize_t body_end) {
  const auto fspath = py::module_::import("os").attr("fspath")(path);
  if (!py::isinstance<py::str>(fspath)) {
    throw py::type_error("path must be a str or os.PathLike of str");
  }
  const std::string p = fspath.cast<std::string>();
  const datapool::CsvOptions opt = csv_options(dim, threads, chunk_bytes, body_start, body_end);
  try {
    return run_csv_parse([&] { return datapool::read_pool_csv(p, opt, python_interrupted); });
  } catch (const std::system_error& e) {
    errno = e.code().value();
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, p.c_str());
    throw py::error_already_set();
  }
}

py::tuple parse_pool_csv(const py::bytes& data, py::ssize_t dim, py::ssize_t threads,
                         py::ssize_t chunk_bytes) {
  const datapool::CsvOptions opt = csv_options(dim, threads, chunk_bytes);
  char* buf = nullptr;
  py::ssize_t size = 0;
  if (PyBytes_AsStringAndSize(data.ptr(), &buf, &size) != 0) throw py::error_already_set();
  // A heap copy of the exact size, so that memory checkers (ASan, in tools/fuzz_pool_csv.py) see
  // any read past the end of the input.
  const auto n = static_cast<std::size_t>(size);
  std::unique_ptr<char[]> copy(new char[std::max<std::size_t>(n, 1)]);
  if (n > 0) std::memcpy(copy.get(), buf, n);
  return run_csv_parse(
      [&] { return datapool::parse_pool_csv(copy.get(), n, opt, python_interrupted); });
}

// The text of pool CSV rows as bytes: the names as UTF-8 views into their str objects (which the
// caller's list keeps alive), then the formatting without the GIL, then one copy into the bytes.
py::bytes format_pool_csv_rows(const py::list& names, const py::array& embeddings,
                               const py::array& labels, py::ssize_t threads) {
  check_threads(threads);
  const MatrixView emb = check_matrix(embeddings, "embeddings");
  if (!labels.dtype().is(py::dtype::of<std::int64_t>())) {
    throw py::type_error("labels must be int64, got " + std::string(py::str(labels.dtype())) +
                         "; try `labels.astype(np.int64)`");
  }
  if (labels.ndim() != 1 || !(labels.flags() & py::array::c_style)) {
    throw py::value_error("labels must be a 1-D C-contiguous array, got shape " +
                          shape_str(labels) + "; try `np.ascontiguousarray(labels)`");
  }
  const auto n = static_cast<std::size_t>(py::len(names));
  if (emb.rows != n || static_cast<std::size_t>(labels.shape(0)) != n) {
    throw py::value_error("names, embeddings and labels must have one entry per row, got " +
                          std::to_string(n) + " names, " + std::to_string(emb.rows) +
                          " embedding rows and " + std::to_string(labels.shape(0)) + " labels");
  }
  std::vector<std::string_view> views;
  views.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(names.ptr(), static_cast<py::ssize_t>(i));
    if (!PyUnicode_Check(item)) {
      throw py::type_error("names must be a list of str, got " +
                           std::string(py::str(py::type::handle_of(item).attr("__name__"))) +
                           " at " + std::to_string(i));
    }
    py::ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(item, &size);  // UnicodeEncodeError, as .encode()
    if (utf8 == nullptr) throw py::error_already_set();
    views.emplace_back(utf8, static_cast<std::size_t>(size));
  }
  const auto* labs = static_cast<const std::int64_t*>(labels.data());
  std::vector<std::string> parts;
  {
    py::gil_scoped_release release;
    parts = datapool::format_pool_csv_rows(views, emb.data, emb.cols, labs,
                                           static_cast<std::size_t>(threads));
  }
  std::size_t total = 0;
  for (const auto& part : parts) total += part.size();
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(total));
  if (out == nullptr) throw py::error_already_set();
  char* dst = PyBytes_AS_STRING(out);
  for (const auto& part : parts) {
    std::memcpy(dst, part.data(), part.size());
    dst += part.size();
  }
  return py::reinterpret_steal<py::bytes>(out);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "datapool's C++ core: farthest-point selection and the pool CSV reader and writer.";
  m.attr("__version__") = DATAPOOL_VERSION;
  m.attr("SIMD") = datapool::best_kernels().name;
  m.attr("SIMD_AVAILABLE") = datapool::supported_kernels();
  m.attr("PACK_SIMD") = datapool::pack_simd();
#if defined(DATAPOOL_CUDA)
  m.attr("HAS_CUDA") = true;
  py::register_exception<datapool::CudaError>(m, "CudaError", PyExc_RuntimeError);
#else
  m.attr("HAS_CUDA") = false;
  struct NoCudaError : std::exception {};  // never thrown: the class exists in every build
  py::register_exception<NoCudaError>(m, "CudaError", PyExc_RuntimeError);
#endif
  m.attr("HARDWARE_THREADS") = std::thread::hardware_concurrency();

  // CsvError -> _core.PoolCsvError(ValueError) with .line (1-based) and .column (str or None);
  // datapool.pool_csv turns it into PoolCorruptError naming the file.
  static py::handle csv_error_type =
      py::exception<datapool::CsvError>(m, "PoolCsvError", PyExc_ValueError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const datapool::CsvError& e) {
      py::gil_scoped_acquire gil;
      py::object err = py::reinterpret_borrow<py::object>(csv_error_type)(e.what());
      err.attr("line") = e.line;
      err.attr("column") = e.column.empty() ? py::none() : py::object(py::str(e.column));
      PyErr_SetObject(csv_error_type.ptr(), err.ptr());
    }
  });

  m.def("read_pool_csv", &read_pool_csv, py::arg("path"), py::arg("dim") = -1,
        py::arg("threads") = 0, py::arg("chunk_bytes") = 0, py::arg("body_start") = 0,
        py::arg("body_end") = 0,
        R"doc(Parse a pool CSV (Lightly's embeddings format) into (filenames, embeddings, labels).

The file is memory-mapped read-only and parsed in parallel; the GIL is released meanwhile and
Ctrl-C stops it. dim: the number of embedding columns the header must have, or -1 for any.
threads: 0 for every core. chunk_bytes: 0 for automatic (small values are for tests).
body_start, body_end: parse only the records in those bytes of the file (body_start a record's
first byte; 0 for the first record and for the end); the header is checked either way. Line
numbers in errors are the file's.

Returns a new list of str, a new float32 (n, d) C-contiguous array (it owns the parsed buffer, no
copy) and a new int64 (n,) array. Records follow csv.reader(strict=True); floats are rounded
correctly to float32 and must be finite. A malformed file raises PoolCsvError (a ValueError)
with .line and .column; a file that cannot be opened raises OSError.)doc");
  m.def("parse_pool_csv", &parse_pool_csv, py::arg("data"), py::arg("dim") = -1,
        py::arg("threads") = 0, py::arg("chunk_bytes") = 0,
        R"doc(read_pool_csv on CSV bytes in memory (copied first; for tests and fuzzing).)doc");

  m.def("format_pool_csv_rows", &format_pool_csv_rows, py::arg("names"), py::arg("embeddings"),
        py::arg("labels"), py::arg("threads") = 0,
        R"doc(The pool CSV's rows as new bytes (UTF-8): `name,v_0,...,v_{d-1},label\n` per row.

names: a list of str, written as they are (quote them first: datapool.pool.csvfile). embeddings:
float32 (n, d), C-contiguous; each value is written as Python's "{:.9g}".format writes it.
labels: int64 (n,). The GIL is released while formatting; threads: 0 for every core.)doc");
  m.def("fps_select", &fps_select, py::arg("candidates"), py::arg("n_samples"),
        py::arg("selected") = py::none(), py::arg("min_distance") = 0.0, py::arg("threads") = 0,
        py::arg("algorithm") = "auto", py::arg("kernels") = py::none(),
        py::arg("screen") = py::none(), py::arg("progress") = py::none(),
        R"doc(Exact farthest-point (k-center greedy) selection.

candidates: float32 (N, d), C-contiguous. selected: float32 (M, d) or None; its rows count as
already picked. Picks at most n_samples candidates; stops early when the farthest remaining one is
closer than min_distance, or at distance 0. Ties go to the lowest index. threads: 0 for every
core. algorithm: 'auto', 'pruned' or 'brute'. kernels: None for the best this CPU supports, or
'scalar' / 'avx2' / 'avx512' / 'avx512vnni'. screen: with the pruned algorithm, bound each row's
distance from an int8 copy first and measure in float32 only the rows the bound cannot rule out
(the same picks and distances, bit for bit; d <= 1040). None: where it pays (16 MiB of candidates
or more, 8 picks or more); True: wherever it can run; False: the float32 pruned path alone.

Returns (indices, min_distances, info): new int64 and float32 arrays of the picks in order and each
pick's Euclidean min-distance when picked (+inf for the first pick of an empty pool), and a dict
with evaluations, center_evaluations, rechecks (screened rows measured again in float32), screen
('int8' or 'off'), algorithm and kernels. The GIL is released while it
computes; Ctrl-C stops it. progress: None, or a callable given the picks so far (an int) about
every 50 ms while it computes, with the GIL; an exception it raises stops the selection.)doc");
  m.def("cuda_device_count", [] {
#if defined(DATAPOOL_CUDA)
    return datapool::cuda_device_count();
#else
    return 0;
#endif
  }, R"doc(Usable CUDA devices: 0 without a driver or device, or in a build without CUDA.)doc");
  m.def("cuda_status", [] {
#if defined(DATAPOOL_CUDA)
    return datapool::cuda_status();
#else
    return std::string("built without CUDA");
#endif
  }, R"doc(Why cuda_device_count() is 0 (CUDA's message), else the first device's name.)doc");
  m.def("fps_select_cuda", &fps_select_cuda, py::arg("candidates"), py::arg("n_samples"),
        py::arg("selected") = py::none(), py::arg("min_distance") = 0.0, py::arg("device") = 0,
        R"doc(fps_select on a CUDA GPU: brute force over the whole matrix in device memory.

Arguments and results as fps_select (no threads, algorithm or kernels). The picks and
min-distances are bit for bit those of fps_select(..., algorithm='brute', kernels='scalar')
(src/cpp/datapool/fps_cuda.hpp). Raises CudaError (a RuntimeError) when no device is usable or
CUDA fails, and RuntimeError in a build without CUDA (HAS_CUDA False).)doc");
  m.def("combined_select", &combined_select, py::arg("candidates"), py::arg("n_samples"),
        py::arg("selected"), py::arg("weight"), py::arg("mask"), py::arg("balances"),
        py::arg("diversity") = 1.0, py::arg("min_distance") = 0.0, py::arg("threads") = 0,
        py::arg("kernels") = py::none(), py::arg("screen") = py::none(),
        py::arg("progress") = py::none(),
        R"doc(Greedy selection by combined strategies with diversity (docs/selection.md).

candidates: float32 (N, d), C-contiguous; selected: float32 (M, d) or None (already picked).
weight: float64 (N,), the fixed log terms (-inf: never picked); mask: uint8 (N,), 0 drops a
candidate (thresholds). balances: a list of (P float32 (N, C) rows summing to 1 or 0, counts
float64 (C,) the pool's, target float64 (C,), strength). diversity: its strength, > 0.
Each pick maximises diversity*log(mind) + weight + sum of strength*P.g(counts), exactly, with
triangle-inequality pruning; ties go to the lowest index. kernels and screen as fps_select
(the screen changes no pick, score or min-distance).

Returns new arrays (indices int64, min_distances float32, scores float64, balance_terms float64
(k, len(balances))), the stop reason and an info dict (evaluations, rechecks, screen,
kernels). The GIL is released; Ctrl-C stops it. progress: as fps_select's.)doc");
  m.def("pack_frames", &pack_frames, py::arg("frames"), py::arg("out"), py::arg("scale"),
        py::arg("shift"), py::arg("threads") = 0,
        R"doc(Pack decoded uint8 frames into a float32 NCHW batch, resized and normalised.

frames: a sequence of uint8 numpy arrays, each (H, W) or (H, W, 1) grayscale, (H, W, 3) RGB or
(H, W, 4) RGBA (alpha is dropped), any size >= 1x1. Each row must be contiguous; rows may be any
distance apart (a view of a padded PyAV plane, a crop, a flipped view are read in place).
out: float32 (N, 3, OH, OW), C-contiguous, N >= len(frames), written in place: frame i goes to
out[i]; out[len(frames):] is not touched. No new array is returned and nothing is allocated per
frame, so one buffer can be reused batch after batch.
scale, shift: float32 (3,). out[i, c] = resized[c] * scale[c] + shift[c], resized in 0..255 and
kept in float (gray is replicated to the three channels first).
Resize, per axis: identity when the size is equal; area averaging (exact fractional coverage,
like OpenCV INTER_AREA) when it shrinks; bilinear with half-pixel centres, clamped at the edges
(like PIL BILINEAR / OpenCV INTER_LINEAR) when it grows. Aspect ratio is not kept.
threads: 0 for every core; frames are spread over the threads. The GIL is released while it
computes.)doc");
}

// The pool CSV (datapool_latest.csv, Lightly's embeddings format) parsed into one contiguous
// float32 matrix, in parallel. Plain C++17, no Python.
//
// Format: a header `filenames,embedding_0,...,embedding_{d-1},labels`, then one record per sample.
// Records follow what Python's `csv.reader(f, strict=True)` reads from a file opened with
// newline='' (the excel dialect), so every file Python's csv writer makes parses the same way:
// - fields split at ','; a field that starts with '"' is quoted: it ends at a lone '"', and '""'
//   inside stands for one '"'; a quoted field may hold ',', '\r' and '\n'. A '"' inside an
//   unquoted field is an ordinary character. After a closing quote only ',', a line end or the end
//   of the file may follow (strict mode), and a quote left open at the end of the file is an error.
// - records end at "\r\n", "\r" or "\n"; the last record may lack a line end. A blank line is a
//   record with no fields (so it is a short row). Line numbers count the same line ends,
//   including those inside quoted fields, as Python's `csv.reader.line_num` does.
// Values:
// - filenames: non-empty, valid UTF-8 (as Python's strict utf-8 codec decides), no NUL byte, unique.
// - embedding_j: a decimal float, `-?(digits[.digits]|.digits)([eE][+-]?digits)?`, rounded
//   correctly to float32 (std::from_chars). It must be finite: `nan`, `inf` and values that
//   overflow float32 are rejected as bad numbers, since a pool never holds them. Values that
//   underflow become (signed) zero or a subnormal, as Python's float32 conversion gives.
//   No whitespace, no leading '+'.
// - labels: ASCII digits only (leading zeros allowed), at most INT64_MAX.
// Any defect throws CsvError with the 1-based line and the column name.
//
// Parallel parse: the body is cut into chunks at line ends, each chunk is parsed on the
// assumption that it starts at a record boundary, and the chunks are then checked to tile the
// file: chunk i must end exactly where chunk i+1 began. Parsed from a true boundary, chunk i's
// last record ending there proves that chunk i+1 began at a true boundary too. When the guess
// was wrong (a chunk began inside a quoted filename that holds a line end), the whole body is
// parsed again sequentially, so the result never depends on the chunking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "datapool/fps.hpp"  // InterruptCheck, Interrupted

namespace datapool {

// A defect in the file. line is 1-based; column is "filenames", "embedding_<j>", "labels", or
// empty when the whole record or the header is at fault. what() is "line L[, column C]: detail".
class CsvError : public std::runtime_error {
 public:
  CsvError(std::size_t line, std::string column, const std::string& detail);
  std::size_t line;
  std::string column;
};

struct PoolCsv {
  std::size_t rows = 0;
  std::size_t dim = 0;
  std::unique_ptr<float[]> embeddings;    // rows x dim, row-major (may have spare capacity)
  std::unique_ptr<std::int64_t[]> labels;  // rows
  std::string names;                      // the filenames, UTF-8, concatenated
  std::vector<std::size_t> name_offsets;  // rows + 1: name i is names[off[i], off[i+1])
};

struct CsvOptions {
  long long expected_dim = -1;  // >= 0: the header must have this many embedding columns
  std::size_t threads = 0;      // 0: every hardware thread
  std::size_t chunk_bytes = 0;  // 0: automatic; small values exercise the chunking in tests
  // The records to parse, as byte offsets into the text: from body_start (0: the first record
  // after the header; else a record's first byte, at or past it) to body_end (0: the end). The
  // header is parsed either way. For a reader that knows the rows before body_start already (the
  // sidecar catching up with appended rows): no copy of the text it parses.
  std::size_t body_start = 0;
  std::size_t body_end = 0;
};

// Parses the CSV text data[0, size). Throws CsvError for a malformed file and Interrupted when
// `interrupted` (polled from the calling thread between chunks) returns true.
PoolCsv parse_pool_csv(const char* data, std::size_t size, const CsvOptions& options,
                       const InterruptCheck& interrupted = {});

// Memory-maps the file read-only and parses it. Throws std::system_error when the file cannot be
// opened or mapped (errno in code()). The file must not be truncated while it is parsed.
PoolCsv read_pool_csv(const std::string& path, const CsvOptions& options,
                      const InterruptCheck& interrupted = {});

}  // namespace datapool

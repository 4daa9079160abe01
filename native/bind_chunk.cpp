// VisionChunk: the typed vision input of Engine.prefill (vision_chunk.h), made from numpy arrays.
#include "bindings.h"

#include "vision_chunk.h"

namespace streamproc {
namespace {

// A 2-D array's row count and width (InputError naming `what` for another rank).
std::pair<size_t, size_t> rows_cols(const py::handle& value, const char* what) {
  auto array = py::array::ensure(value);
  if (!array || array.ndim() < 1 || array.ndim() > 3)
    throw InputError(std::string(what) + " must be a 2-D numeric array");
  const size_t rows = static_cast<size_t>(array.shape(0));
  size_t cols = 1;
  for (py::ssize_t d = 1; d < array.ndim(); ++d) cols *= static_cast<size_t>(array.shape(d));
  return {rows, cols};
}

template <typename T>
std::vector<T> optional_vector(const py::object& value, const char* what, size_t expected_size) {
  if (value.is_none()) return {};
  return to_vector<T>(value, what, expected_size);
}

VisionChunk make_chunk(const py::handle& pixel_rows, const py::handle& position_ids, const py::handle& grid_offsets,
                       const py::object& window_seqlens, const py::object& reverse_index, const py::object& pos_idx,
                       const py::object& pos_weight) {
  VisionChunk chunk;
  const auto [patches, features] = rows_cols(pixel_rows, "pixel_rows");
  chunk.features = static_cast<int>(features);
  chunk.pixel_rows = to_vector<float>(pixel_rows, "pixel_rows");
  chunk.position_ids = to_vector<int32_t>(position_ids, "position_ids", patches * 2);
  chunk.grid_offsets = to_vector<int32_t>(grid_offsets, "grid_offsets");
  chunk.window_seqlens = optional_vector<int32_t>(window_seqlens, "window_seqlens", 0);
  chunk.reverse_index = optional_vector<int32_t>(reverse_index, "reverse_index", patches / 4);
  chunk.pos_idx = optional_vector<int32_t>(pos_idx, "pos_idx", patches * 4);
  chunk.pos_weight = optional_vector<float>(pos_weight, "pos_weight", patches * 4);
  check_chunk_shape(chunk);
  return chunk;
}

}  // namespace

void bind_chunk(py::module_& m) {
  py::class_<VisionChunk>(m, "VisionChunk", R"doc(
One ViT call's input, made once and immutable: whole frame pairs of one image or video, rows in
the ViT's order. Arguments (copied; numpy arrays, converted to the dtype named):

  pixel_rows    float32 [patches, features]  (features: 1176 Qwen2.5-VL, 1536 Qwen3-VL)
  position_ids  int32 [patches, 2]           (row, column) of each patch
  grid_offsets  int32 [grids]                input row (relative to the prefilled tokens) of each
                                              frame pair's first merged token; the grids split the
                                              patches evenly and attend only within themselves
  window_seqlens, reverse_index   Qwen2.5-VL's window attention (int32; default: none)
  pos_idx, pos_weight             Qwen3-VL's position-grid taps, [patches, 4] (default: none)

Raises InputError for arrays that disagree. Which optional parts a bmodel needs is its family's
(Engine.info.family); Engine.prefill refuses a chunk made for the other family. Thread-safe:
read-only after construction.)doc")
      .def(py::init(&make_chunk), py::arg("pixel_rows"), py::arg("position_ids"), py::arg("grid_offsets"), py::kw_only(),
           py::arg("window_seqlens") = py::none(), py::arg("reverse_index") = py::none(), py::arg("pos_idx") = py::none(),
           py::arg("pos_weight") = py::none())
      .def_property_readonly("patches", &VisionChunk::patches)
      .def_property_readonly("features", [](const VisionChunk& c) { return c.features; })
      .def_property_readonly("grids", &VisionChunk::grids, "frame pairs in the chunk")
      .def_property_readonly("tokens", &VisionChunk::tokens, "merged tokens the chunk fills")
      .def_property_readonly("grid_offsets", [](const VisionChunk& c) { return c.grid_offsets; })
      .def_property_readonly("has_window", &VisionChunk::has_window, "carries Qwen2.5-VL window attention")
      .def_property_readonly("has_position_grid", &VisionChunk::has_position_grid, "carries Qwen3-VL position taps")
      .def("__repr__", [](const VisionChunk& c) {
        return "VisionChunk(" + field("patches", c.patches()) + ", " + field("features", c.features) + ", " +
               field("grid_offsets", c.grid_offsets) + ")";
      });
}

}  // namespace streamproc

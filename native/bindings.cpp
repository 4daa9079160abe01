// pybind11 module streamproc._native: the Python face of the native engine.
// It knows tensors and token ids only; video, prompts and MQTT live in Python.
// Device work runs with the GIL released, so other Python threads (other streams) keep going.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "engine.h"
#include "errors.h"
#include "masks.h"

namespace py = pybind11;
using namespace streamproc;

#ifndef STREAMPROC_NATIVE_VERSION
#define STREAMPROC_NATIVE_VERSION "0.1.0"
#endif

namespace {

template <typename T>
std::vector<T> to_vector(const py::handle& value, const char* what, size_t expected_size = 0) {
  auto array = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(value);
  if (!array) throw InputError(std::string(what) + " must be a numeric array");
  std::vector<T> out(array.data(), array.data() + array.size());
  if (expected_size && out.size() != expected_size)
    throw InputError(std::string(what) + " has " + std::to_string(out.size()) + " values, expected " +
                     std::to_string(expected_size));
  return out;
}

VisionChunk to_chunk(const py::dict& item) {
  VisionChunk chunk;
  for (const char* key : {"token_offset", "pixel_rows", "rotary_pos", "cu_seqlens", "cu_window_seqlens", "reverse_index"})
    if (!item.contains(key)) throw InputError(std::string("vision chunk is missing '") + key + "'");
  chunk.token_offset = item["token_offset"].cast<int>();
  chunk.pixel_rows = to_vector<float>(item["pixel_rows"], "pixel_rows");
  chunk.patches = static_cast<int>(chunk.pixel_rows.size() / 1176);
  chunk.rotary_pos = to_vector<int32_t>(item["rotary_pos"], "rotary_pos");
  chunk.cu_seqlens = to_vector<int32_t>(item["cu_seqlens"], "cu_seqlens");
  chunk.cu_window_seqlens = to_vector<int32_t>(item["cu_window_seqlens"], "cu_window_seqlens");
  chunk.reverse_index = to_vector<int32_t>(item["reverse_index"], "reverse_index");
  return chunk;
}

SamplingParams to_params(bool do_sample, float temperature, float top_p, int top_k, float repetition_penalty) {
  if (do_sample && (temperature <= 0 || top_p <= 0 || top_p > 1 || top_k < 1))
    throw InputError("sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 1");
  return SamplingParams{do_sample, temperature, top_p, top_k, repetition_penalty};
}

py::dict info_dict(const Engine& engine) {
  const ModelInfo& info = engine.info();
  py::dict out;
  out["chip"] = info.chip;
  out["layout"] = info.layout;
  out["layers"] = info.layers;
  out["seq_length"] = info.seq_length;
  out["max_input"] = info.max_input;
  out["hidden"] = info.hidden;
  out["kv_heads"] = info.kv_heads;
  out["head_dim"] = info.head_dim;
  out["max_patches"] = info.max_patches;
  out["vit_dynamic"] = info.vit_dynamic;
  out["prefill_dynamic"] = info.prefill_dynamic;
  out["has_sample_head"] = info.has_sample_head;
  out["lm_head_returns_token"] = info.lm_head_returns_token;
  out["vocab"] = info.vocab;
  out["max_history"] = info.max_history;
  out["decode_stages"] = info.decode_stages;
  out["supports_history"] = engine.supports_history();
  out["nets"] = info.nets;
  out["runtime"] = engine.runtime_path();
  return out;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "streamproc native engine (Sophgo libbmrt loaded at run time with dlopen)";
  m.def("version", [] { return std::string(STREAMPROC_NATIVE_VERSION); }, "Version of the native extension.");
  m.def("abi_sizes", [] {
    py::dict out;
    out["device_mem"] = sizeof(bm::DeviceMem);
    out["shape"] = sizeof(bm::Shape);
    out["tensor"] = sizeof(bm::Tensor);
    out["tensor.shape"] = offsetof(bm::Tensor, shape);
    out["tensor.device_mem"] = offsetof(bm::Tensor, device_mem);
    out["tensor.st_mode"] = offsetof(bm::Tensor, st_mode);
    return out;
  }, "Sizes and offsets of the runtime structs as this build declares them.");
  m.def("load_runtime", [](const std::string& runtime_dir) {
    std::shared_ptr<const Runtime> rt;
    {
      py::gil_scoped_release release;
      rt = Runtime::get(runtime_dir);
    }
    return rt->bmrt_path;
  }, py::arg("runtime_dir") = "", "Load libbmrt (explicit folder, $STREAMPROC_BMRT_DIR, loader path, SDK); returns its path.");
  m.def("runtime_path", [] {
    auto rt = Runtime::loaded();
    return rt ? py::cast(rt->bmrt_path) : py::none();
  }, "Path of the libbmrt loaded in this process, or None.");
  m.def("vit_block_mask", [](const std::vector<int32_t>& cu_seqlens, int size) {
    auto mask = vit_block_mask(cu_seqlens, size);
    py::array_t<float> out({size, size});
    std::copy(mask.begin(), mask.end(), out.mutable_data());
    return out;
  }, py::arg("cu_seqlens"), py::arg("size"), "The ViT attention mask the engine builds (for tests).");

  auto base = py::register_exception<std::runtime_error>(m, "NativeError");
  py::register_exception<RuntimeNotFound>(m, "RuntimeNotFoundError", base.ptr());
  py::register_exception<BmodelError>(m, "BmodelError", base.ptr());
  py::register_exception<InputError>(m, "InputError", base.ptr());
  py::register_exception<DeviceError>(m, "DeviceError", base.ptr());
  py::register_exception<Aborted>(m, "AbortedError", base.ptr());

  py::class_<Engine>(m, "Engine", R"doc(
A Qwen2.5-VL bmodel on one TPU (or the CPU simulator). Not thread-safe: use one engine per thread;
several engines over the same bmodel share its weights. Call close() (or use `with`) to free the
device before the interpreter exits.)doc")
      .def(py::init([](const std::string& bmodel, int device_id, const std::string& runtime_dir) {
             py::gil_scoped_release release;
             return new Engine(bmodel, device_id, runtime_dir);
           }),
           py::arg("bmodel"), py::arg("device_id") = 0, py::arg("runtime_dir") = "")
      .def("info", &info_dict)
      .def_property_readonly("runtime_path", &Engine::runtime_path)
      .def_property_readonly("supports_history", &Engine::supports_history)
      .def_property_readonly("history_length", &Engine::history_length)
      .def("clear_history", &Engine::clear_history)
      .def("truncate_history", &Engine::truncate_history, py::arg("tokens"),
           "Keep only the first `tokens` cached tokens (to ask another question about the same input).")
      .def("seed", &Engine::seed, py::arg("value"))
      .def("abort", &Engine::abort,
           "Stop the running prefill/decode/generate (or, if none runs, the next one) at its next check: before "
           "every net launch and before it returns. That call raises AbortedError with the history as before it. "
           "Thread-safe: call it from any thread; it returns at once (the running call holds no GIL).")
      .def("clear_abort", &Engine::clear_abort, "Drop an abort() that no call has seen yet.")
      .def("close", [](Engine& engine) {
        py::gil_scoped_release release;
        engine.close();
      })
      .def("__enter__", [](Engine& engine) -> Engine& { return engine; }, py::return_value_policy::reference)
      .def("__exit__", [](Engine& engine, py::args) {
        py::gil_scoped_release release;
        engine.close();
      })
      .def("times", [](Engine& engine) {
        const StepTimes& times = engine.times();
        py::dict out;
        out["vit_s"] = times.vit;
        out["prefill_s"] = times.prefill;
        out["decode_s"] = times.decode;
        out["vit_device_s"] = times.vit_device;
        out["prefill_device_s"] = times.prefill_device;
        out["decode_device_s"] = times.decode_device;
        out["copies_s"] = times.copies;
        out["lock_wait_s"] = times.lock_wait;
        return out;
      }, "Seconds since reset_times(): per phase (vit, prefill, decode) the wall time inside the engine and, "
         "as *_device_s, the part inside net launches (launch + wait); copies_s is the time in host<->device and "
         "device<->device copies, lock_wait_s the time spent waiting for other engines on the device.")
      .def("reset_times", [](Engine& engine) { engine.times() = StepTimes{}; })
      .def("memory_map", [](const Engine& engine) {
        py::list out;
        for (const MemRegion& region : engine.memory_map())
          out.append(py::make_tuple(region.label, region.address, region.bytes, region.own));
        return out;
      }, "(label, device address, bytes, own) of the engine's buffers and KV cache (own=True) and of every "
         "net's input and output memory (own=False), for checks and diagnostics.")
      .def("prefill",
           [](Engine& engine, py::handle input_ids, py::handle position_ids, const py::list& vision, int next_position,
              bool do_sample, float temperature, float top_p, int top_k, float repetition_penalty) {
             auto ids = to_vector<int32_t>(input_ids, "input_ids");
             auto positions = to_vector<int32_t>(position_ids, "position_ids", 3 * ids.size());
             std::vector<VisionChunk> chunks;
             for (const auto& item : vision) chunks.push_back(to_chunk(item.cast<py::dict>()));
             const auto params = to_params(do_sample, temperature, top_p, top_k, repetition_penalty);
             py::gil_scoped_release release;
             return engine.prefill(ids, positions, chunks, next_position, params);
           },
           py::arg("input_ids"), py::arg("position_ids"), py::arg("vision") = py::list(), py::arg("next_position"),
           py::arg("do_sample") = false, py::arg("temperature") = 1.0f, py::arg("top_p") = 1.0f, py::arg("top_k") = 50,
           py::arg("repetition_penalty") = 1.0f,
           "Prefill the turn's tokens (visual tokens spliced in) after the history; returns the first token.")
      .def("decode",
           [](Engine& engine, int token, bool do_sample, float temperature, float top_p, int top_k,
              float repetition_penalty) {
             const auto params = to_params(do_sample, temperature, top_p, top_k, repetition_penalty);
             py::gil_scoped_release release;
             return engine.decode(token, params);
           },
           py::arg("token"), py::arg("do_sample") = false, py::arg("temperature") = 1.0f, py::arg("top_p") = 1.0f,
           py::arg("top_k") = 50, py::arg("repetition_penalty") = 1.0f, "Feed the last token; returns the next.")
      .def("generate",
           [](Engine& engine, int first_token, int max_new_tokens, const std::vector<int>& stop_ids, bool do_sample,
              float temperature, float top_p, int top_k, float repetition_penalty) {
             const auto params = to_params(do_sample, temperature, top_p, top_k, repetition_penalty);
             py::gil_scoped_release release;
             return engine.generate(first_token, max_new_tokens, stop_ids, params);
           },
           py::arg("first_token"), py::arg("max_new_tokens"), py::arg("stop_ids"), py::arg("do_sample") = false,
           py::arg("temperature") = 1.0f, py::arg("top_p") = 1.0f, py::arg("top_k") = 50,
           py::arg("repetition_penalty") = 1.0f,
           "Decode from the token prefill returned until a stop token, max_new_tokens or the sequence end; "
           "returns every generated token, the first included.");
}

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

template <typename T>
std::string field(const char* name, const T& value) {
  return std::string(name) + "=" + static_cast<std::string>(py::repr(py::cast(value)));
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

  py::class_<SamplingParams>(m, "SamplingParams", R"doc(
How the next token is chosen. The defaults are greedy decoding (do_sample=False); with
do_sample=True the bmodel's sample_head applies repetition_penalty, temperature, top_k and top_p.
Values are checked by each engine call that takes them (InputError), not here. A plain value:
the engine copies what it needs, the caller keeps the object.)doc")
      .def(py::init([](bool do_sample, float temperature, float top_p, int top_k, float repetition_penalty) {
             return SamplingParams{do_sample, temperature, top_p, top_k, repetition_penalty};
           }),
           py::kw_only(), py::arg("do_sample") = false, py::arg("temperature") = 1.0f, py::arg("top_p") = 1.0f,
           py::arg("top_k") = 50, py::arg("repetition_penalty") = 1.0f)
      .def_readwrite("do_sample", &SamplingParams::do_sample)
      .def_readwrite("temperature", &SamplingParams::temperature)
      .def_readwrite("top_p", &SamplingParams::top_p)
      .def_readwrite("top_k", &SamplingParams::top_k)
      .def_readwrite("repetition_penalty", &SamplingParams::repetition_penalty)
      .def("__repr__", [](const SamplingParams& p) {
        return "SamplingParams(" + field("do_sample", p.do_sample) + ", " + field("temperature", p.temperature) + ", " +
               field("top_p", p.top_p) + ", " + field("top_k", p.top_k) + ", " +
               field("repetition_penalty", p.repetition_penalty) + ")";
      });

  py::class_<ModelInfo>(m, "ModelInfo", R"doc(
What the loaded bmodel takes, read from its nets (Engine.info). Read-only attributes; a copy owned
by Python, valid after the engine is closed.)doc")
      .def_readonly("chip", &ModelInfo::chip, "chip the bmodel is built for (BM1684X, BM1688; '' if unknown)")
      .def_readonly("layout", &ModelInfo::layout, "prefill layout: static, dynamic, history or history-old")
      .def_readonly("layers", &ModelInfo::layers)
      .def_readonly("seq_length", &ModelInfo::seq_length, "tokens the KV cache holds (prompt, history and answer)")
      .def_readonly("max_input", &ModelInfo::max_input, "tokens one prefill launch takes (longer inputs run in chunks)")
      .def_readonly("hidden", &ModelInfo::hidden)
      .def_readonly("kv_heads", &ModelInfo::kv_heads)
      .def_readonly("head_dim", &ModelInfo::head_dim)
      .def_readonly("max_patches", &ModelInfo::max_patches, "ViT patches (14x14 px) per call: max_pixels / 196")
      .def_readonly("vit_dynamic", &ModelInfo::vit_dynamic)
      .def_readonly("prefill_dynamic", &ModelInfo::prefill_dynamic)
      .def_readonly("has_sample_head", &ModelInfo::has_sample_head, "built with --do_sample: sampling is possible")
      .def_readonly("lm_head_returns_token", &ModelInfo::lm_head_returns_token)
      .def_readonly("vocab", &ModelInfo::vocab, "vocabulary size when lm_head returns logits, else 0")
      .def_readonly("max_history", &ModelInfo::max_history, "history rows the old layout's block_N takes (else 0)")
      .def_readonly("decode_stages", &ModelInfo::decode_stages)
      .def_readonly("supports_history", &ModelInfo::supports_history)
      .def_readonly("runtime", &ModelInfo::runtime, "path of the libbmrt the engine runs on")
      .def_readonly("nets", &ModelInfo::nets, "net names in the bmodel")
      .def("__repr__", [](const ModelInfo& i) {
        return "ModelInfo(" + field("chip", i.chip) + ", " + field("layout", i.layout) + ", " +
               field("seq_length", i.seq_length) + ", " + field("max_input", i.max_input) + ", " +
               field("max_patches", i.max_patches) + ", " + field("layers", i.layers) + ")";
      });

  py::class_<StepTimes>(m, "StepTimes", R"doc(
Seconds inside the engine since Engine.reset_times() (a snapshot, owned by Python): per phase
(vit, prefill, decode) the wall time inside the engine and, as *_device_s, the part inside net
launches (launch + wait); copies_s is the time in host<->device and device<->device copies,
lock_wait_s the time spent waiting for other engines on the device.)doc")
      .def_readonly("vit_s", &StepTimes::vit)
      .def_readonly("prefill_s", &StepTimes::prefill)
      .def_readonly("decode_s", &StepTimes::decode)
      .def_readonly("vit_device_s", &StepTimes::vit_device)
      .def_readonly("prefill_device_s", &StepTimes::prefill_device)
      .def_readonly("decode_device_s", &StepTimes::decode_device)
      .def_readonly("copies_s", &StepTimes::copies)
      .def_readonly("lock_wait_s", &StepTimes::lock_wait)
      .def("__repr__", [](const StepTimes& t) {
        return "StepTimes(" + field("vit_s", t.vit) + ", " + field("prefill_s", t.prefill) + ", " +
               field("decode_s", t.decode) + ", " + field("copies_s", t.copies) + ")";
      });

  py::class_<Engine>(m, "Engine", R"doc(
A Qwen2.5-VL bmodel on one TPU (or the CPU simulator): tensors and token ids in, token ids out.

Ownership: the engine owns its device handle, runtime and device buffers; close() (or `with`, or
garbage collection) frees them, and must happen before the interpreter exits (libbmrt's static
destructors crash otherwise; TpuBackend closes its engines at exit). Arguments are copied in;
every returned value is a new Python object the caller owns.

Threads: one call at a time per engine (a second thread's call waits); every running call
releases the GIL. abort() may be called from any thread at any time. Several engines over the
same bmodel share its weights and may run in parallel threads.

After an exception from prefill, decode or generate (AbortedError, InputError, DeviceError) the
engine's history is what it was before that call, and the engine stays usable.)doc")
      .def(py::init([](const std::string& bmodel, int device_id, const std::string& runtime_dir) {
             py::gil_scoped_release release;
             return new Engine(bmodel, device_id, runtime_dir);
           }),
           py::arg("bmodel"), py::arg("device_id") = 0, py::arg("runtime_dir") = "",
           "Open device `device_id` and load the bmodel with the libbmrt found from `runtime_dir` (see "
           "load_runtime). Raises BmodelError (missing, damaged, wrong chip, not Qwen2.5-VL), DeviceError or "
           "RuntimeNotFoundError.")
      .def_property_readonly("info", [](const Engine& engine) { return engine.info(); },
                             "ModelInfo: what the bmodel takes (a copy; valid after close()).")
      .def_property_readonly("runtime_path", &Engine::runtime_path)
      .def_property_readonly("supports_history", &Engine::supports_history)
      .def_property_readonly("history_length", &Engine::history_length, "Tokens in the KV cache.")
      .def("clear_history", &Engine::clear_history, "Forget the cached tokens. Not during a call.")
      .def("truncate_history", &Engine::truncate_history, py::arg("tokens"),
           "Keep only the first `tokens` cached tokens (to ask another question about the same input). Not during "
           "a call.")
      .def("seed", &Engine::seed, py::arg("value"), "Seed the sampler (do_sample=True). Not during a call.")
      .def("abort", &Engine::abort,
           "Stop the running prefill/decode/generate (or, if none runs, the next one) at its next check: before "
           "every net launch and before it returns. That call raises AbortedError with the history as before it. "
           "Thread-safe: call it from any thread; it returns at once (the running call holds no GIL).")
      .def("clear_abort", &Engine::clear_abort, "Drop an abort() that no call has seen yet. Thread-safe.")
      .def("close", [](Engine& engine) {
        py::gil_scoped_release release;
        engine.close();
      }, "Free the device memory, runtime and handle. Thread-safe: a call running in another thread is aborted "
         "and close() waits for it to return. Closing twice is fine; a closed engine refuses calls (InputError).")
      .def("__enter__", [](Engine& engine) -> Engine& { return engine; }, py::return_value_policy::reference)
      .def("__exit__", [](Engine& engine, py::args) {
        py::gil_scoped_release release;
        engine.close();
      })
      .def("times", [](Engine& engine) { return engine.times(); },
           "StepTimes: a snapshot of the engine's timers since reset_times(). Between calls.")
      .def("reset_times", [](Engine& engine) { engine.times() = StepTimes{}; }, "Zero the timers. Between calls.")
      .def("memory_map", [](const Engine& engine) {
        py::list out;
        for (const MemRegion& region : engine.memory_map())
          out.append(py::make_tuple(region.label, region.address, region.bytes, region.own));
        return out;
      }, "(label, device address, bytes, own) of the engine's buffers and KV cache (own=True) and of every "
         "net's input and output memory (own=False), for checks and diagnostics. Between calls.")
      .def("prefill",
           [](Engine& engine, py::handle input_ids, py::handle position_ids, const py::list& vision, int next_position,
              const SamplingParams& sampling) {
             auto ids = to_vector<int32_t>(input_ids, "input_ids");
             auto positions = to_vector<int32_t>(position_ids, "position_ids", 3 * ids.size());
             std::vector<VisionChunk> chunks;
             for (const auto& item : vision) chunks.push_back(to_chunk(item.cast<py::dict>()));
             py::gil_scoped_release release;
             return engine.prefill(ids, positions, chunks, next_position, sampling);
           },
           py::arg("input_ids"), py::arg("position_ids"), py::arg("vision") = py::list(), py::kw_only(),
           py::arg("next_position"), py::arg("sampling") = SamplingParams{},
           "Prefill `input_ids` (int32 [tokens]; position_ids int32 [3, tokens]; `vision`: dicts of ViT chunks "
           "spliced in at their token offsets) after the cached history, and return the first generated token id "
           "(int). `next_position` is the position id of that token. The arrays are copied before the GIL is "
           "released. Raises InputError (does not fit, malformed; nothing changed), AbortedError, DeviceError.")
      .def("decode",
           [](Engine& engine, int token, const SamplingParams& sampling) {
             py::gil_scoped_release release;
             return engine.decode(token, sampling);
           },
           py::arg("token"), py::arg("sampling") = SamplingParams{},
           "Feed the last token; returns the next token id (int). Raises as prefill does.")
      .def("generate",
           [](Engine& engine, int first_token, int max_new_tokens, const std::vector<int>& stop_ids,
              const SamplingParams& sampling) {
             py::gil_scoped_release release;
             return engine.generate(first_token, max_new_tokens, stop_ids, sampling);
           },
           py::arg("first_token"), py::arg("max_new_tokens"), py::arg("stop_ids"), py::arg("sampling") = SamplingParams{},
           "Decode from the token prefill returned until a stop token, max_new_tokens or the sequence end; "
           "returns a new list of every generated token id, the first included. One call: an abort or failure "
           "rolls the history back to where generate started.");
}

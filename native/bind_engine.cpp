// Engine: lifecycle and history (bind_lifecycle) and the model calls (bind_calls).
#include "bindings.h"

#include "engine.h"

namespace streamproc {
namespace {

using EngineClass = py::class_<Engine>;

void close_engine(Engine& engine) {
  py::gil_scoped_release release;
  engine.close();
}

void bind_lifecycle(EngineClass& engine) {
  engine
      .def(py::init([](const std::string& bmodel, int device_id, const std::string& runtime_dir) {
             py::gil_scoped_release release;
             return new Engine(bmodel, device_id, runtime_dir);
           }),
           py::arg("bmodel"), py::arg("device_id") = 0, py::arg("runtime_dir") = "",
           "Open device `device_id` and load the bmodel with the libbmrt found from `runtime_dir` (see "
           "load_runtime). Raises BmodelError (missing, damaged, wrong chip, not Qwen2.5-VL / Qwen3-VL), DeviceError "
           "(among others for a device id the runtime does not have) or RuntimeNotFoundError.")
      .def_property_readonly("info", [](const Engine& e) { return e.info(); },
                             "ModelInfo: what the bmodel takes (a copy; valid after close()).")
      .def_property_readonly("runtime_path", &Engine::runtime_path)
      .def_property_readonly("supports_history", &Engine::supports_history)
      .def_property_readonly("history_length", &Engine::history_length, "Tokens in the KV cache.")
      .def("clear_history", &Engine::clear_history, "Forget the cached tokens. Not during a call.")
      .def("truncate_history", &Engine::truncate_history, py::arg("tokens"),
           "Keep only the first `tokens` cached tokens (to ask another question about the same input). Not during "
           "a call. Raises InputError for more tokens than are cached.")
      .def("seed", &Engine::seed, py::arg("value"), "Seed the sampler (do_sample=True). Not during a call.")
      .def("abort", &Engine::abort,
           "Stop the running prefill/decode/generate (or, if none runs, the next one) at its next check: before "
           "every net launch and before it returns. That call raises AbortedError with the history as before it. "
           "Thread-safe: call it from any thread; it returns at once (the running call holds no GIL).")
      .def("clear_abort", &Engine::clear_abort, "Drop an abort() that no call has seen yet. Thread-safe.")
      .def("close", &close_engine,
           "Free the device memory, runtime and handle. Thread-safe: a call running in another thread is aborted "
           "and close() waits for it to return. Closing twice is fine; a closed engine refuses calls (InputError).")
      .def("__enter__", [](Engine& e) -> Engine& { return e; }, py::return_value_policy::reference)
      .def("__exit__", [](Engine& e, py::args) { close_engine(e); })
      .def("times", [](Engine& e) { return e.times(); },
           "StepTimes: a snapshot of the engine's timers since reset_times(). Between calls.")
      .def("reset_times", [](Engine& e) { e.times() = StepTimes{}; }, "Zero the timers. Between calls.")
      .def("memory_map", [](const Engine& e) {
        py::list out;
        for (const MemRegion& region : e.memory_map())
          out.append(py::make_tuple(region.label, region.address, region.bytes, region.own));
        return out;
      }, "(label, device address, bytes, own) of the engine's buffers and KV cache (own=True) and of every "
         "net's input and output memory (own=False), for checks and diagnostics. Between calls.");
}

int prefill(Engine& engine, const py::handle& input_ids, const py::handle& position_ids,
            const std::vector<VisionChunk>& vision, int next_position, const SamplingParams& sampling) {
  auto ids = to_vector<int32_t>(input_ids, "input_ids");
  auto positions = to_vector<int32_t>(position_ids, "position_ids", 3 * ids.size());
  py::gil_scoped_release release;
  return engine.prefill(ids, positions, vision, next_position, sampling);
}

void bind_calls(EngineClass& engine) {
  engine
      .def("prefill", &prefill, py::arg("input_ids"), py::arg("position_ids"),
           py::arg("vision") = std::vector<VisionChunk>{}, py::kw_only(), py::arg("next_position"),
           py::arg("sampling") = SamplingParams{},
           "Prefill `input_ids` (int32 [tokens]; position_ids int32 [3, tokens]; `vision`: VisionChunks spliced in "
           "at their grid offsets) after the cached history, and return the first generated token id (int). "
           "`next_position` is the position id of that token. The arrays are copied before the GIL is released. "
           "Raises InputError (does not fit, malformed, a chunk of another family; nothing changed), AbortedError, "
           "DeviceError.")
      .def("decode",
           [](Engine& e, int token, const SamplingParams& sampling) {
             py::gil_scoped_release release;
             return e.decode(token, sampling);
           },
           py::arg("token"), py::arg("sampling") = SamplingParams{},
           "Feed the last token; returns the next token id (int). Raises as prefill does.")
      .def("generate",
           [](Engine& e, int first_token, int max_new_tokens, const std::vector<int>& stop_ids,
              const SamplingParams& sampling) {
             py::gil_scoped_release release;
             return e.generate(first_token, max_new_tokens, stop_ids, sampling);
           },
           py::arg("first_token"), py::arg("max_new_tokens"), py::arg("stop_ids"), py::arg("sampling") = SamplingParams{},
           "Decode from the token prefill returned until a stop token, max_new_tokens or the sequence end; "
           "returns a new list of every generated token id, the first included. One call: an abort or failure "
           "rolls the history back to where generate started.");
}

}  // namespace

void bind_engine(py::module_& m) {
  EngineClass engine(m, "Engine", R"doc(
A Qwen2.5-VL or Qwen3-VL bmodel on one TPU (or the CPU simulator): tensors and token ids in, token
ids out. Engine.info says what the bmodel takes (its family, sizes, layout, heads).

Ownership: the engine owns its device handle, runtime and device buffers; close() (or `with`, or
garbage collection) frees them, and must happen before the interpreter exits (libbmrt's static
destructors crash otherwise; TpuBackend closes its engines at exit). Arguments are copied in;
every returned value is a new Python object the caller owns.

Threads: one call at a time per engine (a second thread's call waits); every running call
releases the GIL. abort() may be called from any thread at any time. Several engines over the
same bmodel share its weights and may run in parallel threads.

After an exception from prefill, decode or generate (AbortedError, InputError, DeviceError) the
engine's history is what it was before that call, and the engine stays usable.)doc");
  bind_lifecycle(engine);
  bind_calls(engine);
}

}  // namespace streamproc

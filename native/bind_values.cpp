// Plain values crossing the boundary: SamplingParams (in), ModelInfo and StepTimes (out).
#include "bindings.h"

#include "engine.h"

namespace streamproc {
namespace {

void bind_sampling(py::module_& m) {
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
}

void bind_model_info(py::module_& m) {
  py::class_<ModelInfo>(m, "ModelInfo", R"doc(
What the loaded bmodel takes, read from its nets (Engine.info): the capability queries. Read-only
attributes; a copy owned by Python, valid after the engine is closed.)doc")
      .def_readonly("chip", &ModelInfo::chip, "chip the bmodel is built for (BM1684X, BM1688; '' if unknown)")
      .def_readonly("family", &ModelInfo::family, "model family of the vit net: qwen2.5-vl or qwen3-vl")
      .def_readonly("layout", &ModelInfo::layout, "prefill layout: static, dynamic, history or history-old")
      .def_readonly("layers", &ModelInfo::layers)
      .def_readonly("seq_length", &ModelInfo::seq_length, "tokens the KV cache holds (prompt, history and answer)")
      .def_readonly("max_input", &ModelInfo::max_input, "tokens one prefill launch takes (longer inputs run in chunks)")
      .def_readonly("hidden", &ModelInfo::hidden)
      .def_readonly("kv_heads", &ModelInfo::kv_heads)
      .def_readonly("head_dim", &ModelInfo::head_dim)
      .def_readonly("max_patches", &ModelInfo::max_patches, "ViT patches per call (max_pixels / patch^2)")
      .def_readonly("patch_features", &ModelInfo::patch_features, "values per ViT row: 3 x 2 x patch^2")
      .def_readonly("deepstack_layers", &ModelInfo::deepstack_layers, "Qwen3-VL DeepStack maps (0 for Qwen2.5-VL)")
      .def_readonly("vit_masked", &ModelInfo::vit_masked, "the vit takes a mask: a chunk may hold several frame pairs")
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
        return "ModelInfo(" + field("chip", i.chip) + ", " + field("family", i.family) + ", " + field("layout", i.layout) +
               ", " + field("seq_length", i.seq_length) + ", " + field("max_input", i.max_input) + ", " +
               field("max_patches", i.max_patches) + ", " + field("layers", i.layers) + ")";
      });
}

void bind_step_times(py::module_& m) {
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
}

}  // namespace

void bind_values(py::module_& m) {
  bind_sampling(m);
  bind_model_info(m);
  bind_step_times(m);
}

}  // namespace streamproc

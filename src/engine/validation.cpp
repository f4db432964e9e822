#include "instseg/engine/validation.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <utility>

#include "data/random.h"
#include "engine/byte_record.h"
#include "instseg/distributed/communicator.h"

namespace instseg {

namespace {

// Keeps the validation losses' stream apart from others drawn from the same seed.
constexpr uint64_t kValidationLossStream = 0x76616c;  // "val"

using LossTerms = std::map<std::string, double>;

// This rank's images' loss terms, by image index.
std::vector<std::pair<int64_t, LossTerms>> losses_of_share(MaskRcnnImpl& model, const data::Dataset& dataset,
                                                           uint64_t seed, int rank, int world) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<std::pair<int64_t, LossTerms>> out;
  for (int64_t i = rank; i < dataset.size(); i += world) {
    at::Generator generator = at::detail::createCPUGenerator(
        data::Rng({seed, kValidationLossStream, static_cast<uint64_t>(i)}).next());
    const data::Sample sample = dataset.get(i);
    LossTerms terms;
    for (const auto& [name, value] : model.losses({sample.image}, {sample.targets}, generator)) {
      terms[name] = value.item<double>();
    }
    out.emplace_back(i, std::move(terms));
  }
  return out;
}

// Every rank's per-image loss terms, ordered by image index.
std::vector<std::pair<int64_t, LossTerms>> gather_losses(dist::Communicator& comm,
                                                         std::vector<std::pair<int64_t, LossTerms>> mine) {
  if (comm.world_size() == 1) return mine;
  detail::ByteWriter out;
  for (const auto& [index, terms] : mine) {
    out.put<int64_t>(index);
    out.put<uint64_t>(terms.size());
    for (const auto& [name, value] : terms) {
      out.put_string(name);
      out.put<double>(value);
    }
  }
  std::vector<std::pair<int64_t, LossTerms>> all;
  for (const std::string& bytes : comm.all_gather_bytes(out.take())) {
    detail::ByteReader in(bytes);
    while (!in.done()) {
      auto& [index, terms] = all.emplace_back();
      index = in.get<int64_t>();
      for (uint64_t n = in.get<uint64_t>(); n > 0; --n) {
        std::string name = in.get_string();
        terms[std::move(name)] = in.get<double>();
      }
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return all;
}

}  // namespace

DatasetValidation validate_on_dataset(MaskRcnnImpl& model, const data::Dataset& dataset,
                                      const coco::Dataset& ground_truth, uint64_t seed, dist::Communicator& comm) {
  DatasetValidation out;
  {
    // The path predict takes (MaskRcnn::prepare_inference), so that `instseg predict` on the run
    // folder writes val_predictions.json's entries exactly; dropped again before training goes on.
    const bool prepared_here = !model.inference_prepared();
    model.eval();
    if (prepared_here) model.prepare_inference();
    out.predictions = inference_on_dataset(model, dataset, ground_truth, comm);
    if (prepared_here) model.drop_prepared_inference();
  }

  std::map<std::string, double> sums;
  for (const auto& [index, terms] : gather_losses(comm, losses_of_share(model, dataset, seed, comm.rank(), comm.world_size()))) {
    for (const auto& [name, value] : terms) sums[name] += value;
  }
  for (const auto& [name, sum] : sums) out.losses[name] = sum / static_cast<double>(dataset.size());

  // Scoring is the main rank's (one evaluator over all results); the others get its numbers.
  // With no detections at all every AP and recall is 0 (undefined ones -1), as COCOeval scores it.
  std::vector<at::Tensor> stats = {torch::zeros({24}, torch::kFloat64)};
  if (comm.is_main()) {
    for (const auto type : {evaluation::IouType::kBbox, evaluation::IouType::kSegm}) {
      out.evaluations.push_back(evaluation::evaluate(ground_truth, out.predictions.detections, type));
    }
    auto* s = stats[0].data_ptr<double>();
    std::copy(out.evaluations[0].stats.begin(), out.evaluations[0].stats.end(), s);
    std::copy(out.evaluations[1].stats.begin(), out.evaluations[1].stats.end(), s + 12);
  }
  comm.broadcast(stats, 0);
  const double* s = stats[0].data_ptr<double>();
  std::copy(s, s + 12, out.bbox_stats.begin());
  std::copy(s + 12, s + 24, out.segm_stats.begin());
  return out;
}

}  // namespace instseg

#pragma once
// The mapping between a dataset's category ids and the model's labels: every dataset has one, and
// so does a fine-tuned model (categories.json beside its weights). No torch.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace instseg::data {

// Dataset category ids (COCO's are sparse: 1..90 with gaps) <-> contiguous model labels 1..K
// (0 is the background). Labels follow ascending category id.
class CategoryMap {
 public:
  CategoryMap() = default;
  // ids must be distinct and positive; names[i] belongs to ids[i]. Throws InputError otherwise.
  CategoryMap(const std::vector<int64_t>& category_ids, const std::vector<std::string>& names);

  int64_t num_categories() const { return static_cast<int64_t>(ids_.size()); }  // K
  int64_t num_classes() const { return num_categories() + 1; }  // K + background: the model's num_classes
  bool contains(int64_t category_id) const { return label_of_.count(category_id) > 0; }
  // Throws std::out_of_range (a programming error: callers check contains() for data first).
  int64_t label_of(int64_t category_id) const;
  int64_t category_id_of(int64_t label) const;  // label in 1..K
  const std::string& name_of(int64_t label) const;  // label in 1..K
  const std::vector<int64_t>& category_ids() const { return ids_; }  // ascending; ids_[label - 1]
  // Index = label; entry 0 is "__background__" (the list io/overlay's render_overlay takes).
  std::vector<std::string> class_names() const;

  // {"categories": [{"id": 1, "name": "person"}, ...]}: stored beside a fine-tuned model, so
  // predictions can be written with the dataset's category ids. from_json throws InputError
  // naming `source` and the entry at fault.
  std::string to_json() const;
  static CategoryMap from_json(const std::string& text, const std::string& source);

  bool operator==(const CategoryMap& other) const { return ids_ == other.ids_ && names_ == other.names_; }

 private:
  std::vector<int64_t> ids_;  // ascending
  std::vector<std::string> names_;
  std::map<int64_t, int64_t> label_of_;
};

}  // namespace instseg::data

#include "instseg/data/category_map.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "instseg/errors.h"

namespace instseg::data {

CategoryMap::CategoryMap(const std::vector<int64_t>& category_ids, const std::vector<std::string>& names) {
  if (category_ids.size() != names.size()) {
    throw InputError("categories: " + std::to_string(category_ids.size()) + " ids but " +
                     std::to_string(names.size()) + " names");
  }
  std::vector<size_t> order(category_ids.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return category_ids[a] < category_ids[b]; });
  for (size_t i : order) {
    const int64_t id = category_ids[i];
    if (id <= 0) throw InputError("categories: id " + std::to_string(id) + " must be positive");
    if (label_of_.count(id)) throw InputError("categories: id " + std::to_string(id) + " appears twice");
    ids_.push_back(id);
    names_.push_back(names[i]);
    label_of_[id] = static_cast<int64_t>(ids_.size());
  }
}

int64_t CategoryMap::label_of(int64_t category_id) const { return label_of_.at(category_id); }

int64_t CategoryMap::category_id_of(int64_t label) const {
  if (label < 1 || label > num_categories()) throw std::out_of_range("label " + std::to_string(label));
  return ids_[label - 1];
}

const std::string& CategoryMap::name_of(int64_t label) const {
  if (label < 1 || label > num_categories()) throw std::out_of_range("label " + std::to_string(label));
  return names_[label - 1];
}

std::vector<std::string> CategoryMap::class_names() const {
  std::vector<std::string> out{"__background__"};
  out.insert(out.end(), names_.begin(), names_.end());
  return out;
}

std::string CategoryMap::to_json() const {
  nlohmann::json categories = nlohmann::json::array();
  for (size_t i = 0; i < ids_.size(); ++i) categories.push_back({{"id", ids_[i]}, {"name", names_[i]}});
  return nlohmann::json{{"categories", categories}}.dump(1);
}

CategoryMap CategoryMap::from_json(const std::string& text, const std::string& source) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object() || !doc.contains("categories") || !doc["categories"].is_array()) {
    throw InputError(source + ": expected an object with a \"categories\" list");
  }
  std::vector<int64_t> ids;
  std::vector<std::string> names;
  for (size_t i = 0; i < doc["categories"].size(); ++i) {
    const auto& c = doc["categories"][i];
    if (!c.is_object() || !c.contains("id") || !c["id"].is_number_integer() || !c.contains("name") ||
        !c["name"].is_string()) {
      throw InputError(source + ": categories[" + std::to_string(i) + "] needs an integer \"id\" and a string \"name\"");
    }
    ids.push_back(c["id"].get<int64_t>());
    names.push_back(c["name"].get<std::string>());
  }
  try {
    return CategoryMap(ids, names);
  } catch (const InputError& e) {
    throw InputError(source + ": " + e.what());
  }
}

}  // namespace instseg::data

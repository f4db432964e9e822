// CategoryMap: sparse dataset ids <-> contiguous model labels, and its categories.json form.
#include "instseg/data/category_map.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "instseg/errors.h"

namespace instseg::data {
namespace {

using ::testing::HasSubstr;

TEST(CategoryMap, SparseIdsMapToContiguousLabelsInIdOrder) {
  const CategoryMap map({90, 1, 5}, {"toothbrush", "person", "bus"});
  EXPECT_EQ(map.num_categories(), 3);
  EXPECT_EQ(map.num_classes(), 4);
  EXPECT_EQ(map.label_of(1), 1);
  EXPECT_EQ(map.label_of(5), 2);
  EXPECT_EQ(map.label_of(90), 3);
  EXPECT_EQ(map.category_id_of(3), 90);
  EXPECT_EQ(map.name_of(2), "bus");
  EXPECT_FALSE(map.contains(2));
  EXPECT_THROW(map.category_id_of(0), std::out_of_range);
  EXPECT_EQ(map.class_names(), (std::vector<std::string>{"__background__", "person", "bus", "toothbrush"}));
  EXPECT_EQ(CategoryMap::from_json(map.to_json(), "map.json"), map);
}

TEST(CategoryMap, BadInputNamesTheEntry) {
  EXPECT_THROW(CategoryMap({1, 1}, {"a", "b"}), InputError);
  try {
    CategoryMap::from_json(R"({"categories": [{"id": 1, "name": "a"}, {"id": "2", "name": "b"}]})", "cats.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cats.json: categories[1]"));
  }
  EXPECT_THROW(CategoryMap::from_json("{", "cats.json"), InputError);
}

}  // namespace
}  // namespace instseg::data

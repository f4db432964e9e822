#pragma once
// configs/demo.json's text, compiled into the library (CMakeLists.txt generates its definition).
namespace instseg {
const char* demo_recipe_json();
}  // namespace instseg

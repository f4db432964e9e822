#include <CLI/CLI.hpp>

#include "instseg/cli/commands.h"
#include "instseg/errors.h"

namespace instseg::cli {

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over HTTP (POST /v1/predict)");
  cmd->callback([] { throw ConfigError("serve: not built yet"); });
}

}  // namespace instseg::cli

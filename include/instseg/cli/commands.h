#pragma once
// The instseg program's subcommands. Each register_* adds one subcommand to the app; its callback
// runs the command and throws an instseg error (InputError, CheckpointError, ConfigError) on
// failure, which main prints as one "error: ..." line with a non-zero exit code.
namespace CLI {
class App;
}

namespace instseg::cli {

void register_predict(CLI::App& app);
void register_eval(CLI::App& app);
void register_train(CLI::App& app);
void register_demo(CLI::App& app);

}  // namespace instseg::cli

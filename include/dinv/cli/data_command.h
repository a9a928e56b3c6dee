// `dinv data shapes|export` (src/cli/data_command.cpp).
#pragma once

#include <string>
#include <vector>

namespace dinv::dist {
class World;
}

namespace dinv::cli {

int run_data(dist::World& world, const std::vector<std::string>& args);

}  // namespace dinv::cli

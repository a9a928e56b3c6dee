// The frozen model of stage 1 from a loaded Stable Diffusion folder.
#pragma once

#include <memory>

#include "dinv/inversion/frozen_model.h"
#include "dinv/sd/pipeline.h"

namespace dinv::inversion {

// The returned functions keep `pipeline` alive.
FrozenModel make_frozen_model(std::shared_ptr<sd::Pipeline> pipeline);

}  // namespace dinv::inversion

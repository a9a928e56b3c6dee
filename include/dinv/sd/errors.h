// Errors of the model loader that callers tell apart by type.
#pragma once

#include "dinv/core/error.h"

namespace dinv::sd {

// A weight file dinv refuses to load at all: a pickle checkpoint (.bin, .ckpt,
// .pt, .pth), since unpickling can execute code. Callers that can do without
// a component's weights must still stop on this one.
class PickleCheckpointError : public ModelError {
 public:
  using ModelError::ModelError;
};

}  // namespace dinv::sd

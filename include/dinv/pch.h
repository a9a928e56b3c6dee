// Precompiled header of libdinv: the heavy, stable headers only.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

// The message of the dinv error a call throws, for tests that check what an
// error names; a test failure when it throws nothing.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace dinv::testing {

template <class E>
std::string error_message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

}  // namespace dinv::testing

// A stage's declared settings (core/settings.h) in the store: the typed
// attributes they produce, and the check that an object was written with this
// run's settings (its "settings" attribute), which names each differing one.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dinv/core/settings.h"
#include "dinv/store/store.h"

namespace dinv::store {

void set_attributes(const h5::Object& object,
                    const std::vector<std::pair<std::string, settings::AttributeValue>>& attributes);

// Refuses (StoreError naming each differing setting, old and new value, then
// `hint`) unless `object`'s "settings" attribute is `settings`' text.
template <class S>
void require_settings(const Store& st, const std::string& object, const settings::Declaration<S>& declaration,
                      const S& now, const std::string& hint) {
  const std::string where = "store '" + st.path() + "', " + object;
  declaration.require_same(where, st.group(object).string_attribute("settings"), now, hint);
}

}  // namespace dinv::store

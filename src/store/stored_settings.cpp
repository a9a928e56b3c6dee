#include "dinv/store/stored_settings.h"

namespace dinv::store {

void set_attributes(const h5::Object& object,
                    const std::vector<std::pair<std::string, settings::AttributeValue>>& attributes) {
  for (const auto& [name, value] : attributes)
    std::visit([&, &name = name](const auto& v) { object.set_attribute(name, v); }, value);
}

}  // namespace dinv::store

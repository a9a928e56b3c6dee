// Settings declared once (docs/architecture.md, "Settings declared once"): a
// stage lists each of its settings in one Declaration (key, member of its
// settings struct, help, bounds, default = the struct member's initial value,
// and whether it changes the output). Registration in the ConfigSchema,
// reading a Config into the struct, the `settings` text a store keeps, the
// check that refuses to continue a store made with other settings (naming
// each differing setting), the typed attributes and a derived tag all come
// from that list. The model is diffusers' `register_to_config`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "dinv/core/config.h"
#include "dinv/core/error.h"

namespace dinv::settings {

// A closed set: each enum value and its spelling in configs and stores.
template <class E>
struct Names {
  std::vector<std::pair<E, std::string>> table;

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [value, name] : table) out.push_back(name);
    return out;
  }
  const std::string& name(E value) const {
    for (const auto& [v, name] : table)
      if (v == value) return name;
    throw std::logic_error("settings::Names: a value without a name");
  }
  // `text` passed the schema's choices, so it is always one of the names.
  E parse(const std::string& text) const {
    if (const auto value = find(text)) return *value;
    throw std::logic_error("settings::Names: '" + text + "' is not a declared name");
  }
  // The value named `text`, if one is (text from files the schema never saw).
  std::optional<E> find(const std::string& text) const {
    for (const auto& [value, name] : table)
      if (name == text) return value;
    return std::nullopt;
  }
  // "a, b, c": the names, for messages.
  std::string listed() const {
    std::string out;
    for (const auto& [value, name] : table) out += (out.empty() ? "" : ", ") + name;
    return out;
  }
};

// A typed HDF5 attribute value (the store writes it; core knows no HDF5).
using AttributeValue = std::variant<std::int64_t, double, std::string>;

// A setting's value as the stored `settings` text spells it: 17 significant
// digits for reals, so that the text identifies the value exactly.
template <class T>
std::string exact_text(const T& value) {
  std::ostringstream o;
  o.precision(17);
  o << value;
  return o.str();
}

// A value as a tag spells it: the stream's default 6 significant digits.
template <class T>
std::string short_text(const T& value) {
  std::ostringstream o;
  o << value;
  return o.str();
}

// One differing setting between a stored settings text and this run's.
struct Difference {
  std::string key, stored, now;  // value "" with `missing` set: absent on that side
  bool missing_stored = false, missing_now = false;
  std::string describe() const;
};

// How a stage's settings text is laid out.
enum class TextForm {
  words,  // "name=value name=value" (stores)
  lines,  // "key = value\n" per setting (pretrain's work and output folders)
};

// (name, value) pairs of a stored settings text "a=1 b=two c=x y": a value
// runs up to the next " name=" of a name that follows its own in `names`
// (text order; values may hold spaces and "name=").
std::vector<std::pair<std::string, std::string>> parse_settings_text(const std::string& text,
                                                                     const std::vector<std::string>& names);
// (key, value) pairs of a settings text in lines "key = value".
std::vector<std::pair<std::string, std::string>> parse_settings_lines(const std::string& text);

// The differences, by setting, between two settings texts; `keys[i]` is the
// configuration key of `names[i]`. Empty when the texts name the same values.
std::vector<Difference> compare_settings_texts(const std::string& stored, const std::string& now,
                                               const std::vector<std::string>& names,
                                               const std::vector<std::string>& keys);
// The same for texts in lines (TextForm::lines), whose names are the keys.
std::vector<Difference> compare_settings_lines(const std::string& stored, const std::string& now,
                                               const std::vector<std::string>& keys);

// Refuse to continue: `where` (store and object) was written with `stored`,
// this run has `now`. The message names each differing setting with both
// values; `hint` says what to do instead.
[[noreturn]] void refuse_other_settings(const std::string& where, const std::string& stored, const std::string& now,
                                        const std::vector<Difference>& differences, const std::string& hint);

template <class S>
class Declaration;

// One declared setting of settings struct S. Built by Declaration's add
// calls and refined with the fluent calls below.
template <class S>
class Entry {
 public:
  std::string key;   // "section.name"
  std::string name;  // in the settings text and attributes: the key's last part
  std::string help;
  bool registered = true;   // false: another module registers the key; the stage only reads it
  bool from_config = true;  // false: a value the run derives (a fingerprint), not a configuration key
  bool changes_output = false;
  int text_position = -1;  // in the settings text (changes_output)
  int attribute_position = -1;
  std::string attribute_name;  // "" : the name
  int tag_position = -1;
  std::function<bool(const S&)> applies = [](const S&) { return true; };
  std::string condition;  // when `applies` is not always: "generate.mode = prompt"
  std::function<void(ConfigSchema&, const Entry&)> register_option;
  std::function<void(const Config&, S&)> read;
  std::function<std::string(const S&)> text;          // exact_text of the value
  std::function<AttributeValue(const S&)> attribute;  // the typed value
  std::function<std::string(const S&)> tag;           // this setting's part of a derived tag
  std::vector<std::function<void(OptionBuilder&)>> bounds;

  Entry& min(double v) {
    return bound([v](OptionBuilder& b) { b.min(v); });
  }
  Entry& max(double v) {
    return bound([v](OptionBuilder& b) { b.max(v); });
  }
  Entry& greater_than(double v) {
    return bound([v](OptionBuilder& b) { b.greater_than(v); });
  }
  Entry& non_empty() {
    return bound([](OptionBuilder& b) { b.non_empty(); });
  }
  Entry& choices(std::vector<std::string> allowed) {
    return bound([allowed](OptionBuilder& b) { b.choices(allowed); });
  }
  // The setting decides the output: it is part of the stored settings text
  // (at `position`), and a store made with another value is not continued.
  Entry& changes(int position) {
    changes_output = true;
    text_position = position;
    return *this;
  }
  // Only part of the settings text (and tag) when `p` holds for the run;
  // `described` says when, for the help.
  Entry& only_when(std::function<bool(const S&)> p, std::string described) {
    applies = std::move(p);
    condition = std::move(described);
    return *this;
  }
  // Spelled `text_name` in the settings text, the tag and attributes.
  Entry& named(std::string text_name) {
    name = std::move(text_name);
    return *this;
  }
  // Spelled `spelling(s)` in the settings text (as stores written before
  // the declaration spell it), not the exact text.
  Entry& spelled(std::function<std::string(const S&)> spelling) {
    text = std::move(spelling);
    return *this;
  }
  // Stored as a typed attribute too (at `position`, under `as` or the name).
  Entry& stored(int position, std::string as = "") {
    attribute_position = position;
    attribute_name = std::move(as);
    return *this;
  }
  // Part of the derived tag (at `position`): `prefix` then the short text.
  Entry& tagged(int position, std::string prefix) {
    auto value = text_of_short_;
    return tagged(position, [prefix, value](const S& s) { return prefix + value(s); });
  }
  Entry& tagged(int position, std::function<std::string(const S&)> piece) {
    tag_position = position;
    tag = std::move(piece);
    return *this;
  }

 private:
  friend class Declaration<S>;
  Entry& bound(std::function<void(OptionBuilder&)> b) {
    bounds.push_back(std::move(b));
    return *this;
  }
  std::function<std::string(const S&)> text_of_short_;
};

template <class S>
class Declaration {
 public:
  // `stage`: the command whose output these settings decide ("embed").
  explicit Declaration(std::string stage, TextForm form = TextForm::words) : stage_(std::move(stage)), form_(form) {}

  // A setting held in member `get(s)` of type T (std::int64_t, std::uint64_t,
  // double, bool, std::string); its default is that member of S{}.
  template <class T, class Get>
  Entry<S>& add(const std::string& key, Get get, const std::string& help) {
    auto& e = push(key, help);
    e.read = [get, key](const Config& c, S& s) { get(s) = read_value<T>(c, key); };
    describe(e, get, [](const T& v) { return v; });
    e.register_option = [get](ConfigSchema& schema, const Entry<S>& entry) {
      S defaults{};
      auto b = schema.add(entry.key, schema_value(get(defaults)), entry.help);
      for (const auto& f : entry.bounds) f(b);
    };
    return e;
  }
  template <class T>
  Entry<S>& add(const std::string& key, T S::*member, const std::string& help) {
    return add<T>(
        key, [member](auto& s) -> auto& { return s.*member; }, help);
  }

  // A closed set held as enum E; the choices are the names of `names`.
  template <class E>
  Entry<S>& add_choice(const std::string& key, E S::*member, const Names<E>& names, const std::string& help) {
    auto& e = push(key, help);
    e.read = [member, &names, key](const Config& c, S& s) { s.*member = names.parse(c.get_string(key)); };
    auto get = [member](auto& s) -> auto& { return s.*member; };
    describe(e, get, [&names](E v) { return names.name(v); });
    e.register_option = [member, &names](ConfigSchema& schema, const Entry<S>& entry) {
      auto b = schema.add(entry.key, names.name(S{}.*member), entry.help);
      b.choices(names.names());
      for (const auto& f : entry.bounds) f(b);
    };
    return e;
  }

  // A key without a default (kind `kind`): the member keeps its initial
  // value unless the key is given.
  template <class T>
  Entry<S>& add_optional(const std::string& key, T S::*member, ValueKind kind, const std::string& help) {
    auto& e = add<T>(key, member, help);
    e.read = [member, key](const Config& c, S& s) {
      if (c.has(key)) s.*member = read_value<T>(c, key);
    };
    e.register_option = [kind](ConfigSchema& schema, const Entry<S>& entry) {
      auto b = schema.add_without_default(entry.key, kind, entry.help);
      for (const auto& f : entry.bounds) f(b);
    };
    return e;
  }

  // A value the run derives rather than reads (a model's fingerprint, a
  // cache key), held in string member `member`: it can be part of the
  // settings text and attributes under `name`; `what` names it in messages.
  Entry<S>& derived(const std::string& name, std::string S::*member, const std::string& what) {
    auto& e = add(name, member, what);
    e.key = what;
    e.registered = false;
    e.from_config = false;
    e.read = [](const Config&, S&) {};
    return e;
  }

  // A key that another module registers (sampler.*, run.seed): read only.
  template <class T>
  Entry<S>& use(const std::string& key, T S::*member) {
    auto& e = add<T>(key, member, "");
    e.registered = false;
    return e;
  }

  const std::vector<Entry<S>>& entries() const { return entries_; }

  // Registers the stage's own keys (in declaration order: the order of the
  // help and of the stored configuration) and marks, in the help, every key
  // that changes the stage's output, its own or used.
  void register_options(ConfigSchema& schema) const {
    for (const auto& e : entries_)
      if (e.registered) e.register_option(schema, e);
    for (const auto& e : entries_)
      if (e.changes_output && e.from_config)
        schema.mark_changes_output(e.key, stage_ + (e.condition.empty() ? "" : " when " + e.condition));
  }

  S read(const Config& config) const {
    S s{};
    for (const auto& e : entries_) e.read(config, s);
    return s;
  }

  // The settings that change the output and apply to this run, in text
  // order: "name=value name=value ..." (TextForm::words) or "key = value\n"
  // per setting (TextForm::lines). Stores keep it and compare it.
  std::string text(const S& s) const {
    std::string out;
    for (const auto* e : sorted(&Entry<S>::text_position)) {
      if (!e->applies(s)) continue;
      if (form_ == TextForm::lines)
        out += e->key + " = " + e->text(s) + "\n";
      else
        out += (out.empty() ? "" : " ") + e->name + "=" + e->text(s);
    }
    return out;
  }

  std::vector<std::pair<std::string, AttributeValue>> attributes(const S& s) const {
    std::vector<std::pair<std::string, AttributeValue>> out;
    for (const auto* e : sorted(&Entry<S>::attribute_position))
      out.emplace_back(e->attribute_name.empty() ? e->name : e->attribute_name, e->attribute(s));
    return out;
  }

  // The tag pieces of the settings that apply, joined by '_'.
  std::string tag(const S& s) const {
    std::string out;
    for (const auto* e : sorted(&Entry<S>::tag_position)) {
      if (!e->applies(s)) continue;
      const auto piece = e->tag(s);
      if (!piece.empty()) out += (out.empty() ? "" : "_") + piece;
    }
    return out;
  }

  // The settings, by key, whose values differ between `stored` and this
  // run's text `now` (empty also when `stored` cannot be taken apart).
  std::vector<Difference> differences(const std::string& stored, const std::string& now) const {
    std::vector<std::string> names, keys;
    for (const auto* e : sorted(&Entry<S>::text_position)) {
      names.push_back(e->name);
      keys.push_back(e->key);
    }
    if (form_ == TextForm::lines) return compare_settings_lines(stored, now, keys);
    return compare_settings_texts(stored, now, names, keys);
  }

  // Nothing when `stored` is this run's text; else refuse naming each setting.
  void require_same(const std::string& where, const std::string& stored, const S& now, const std::string& hint) const {
    const auto text_now = text(now);
    if (stored == text_now) return;
    refuse_other_settings(where, stored, text_now, differences(stored, text_now), hint);
  }

 private:
  Entry<S>& push(const std::string& key, const std::string& help) {
    Entry<S> e;
    e.key = key;
    e.name = key.substr(key.rfind('.') + 1);
    e.help = help;
    entries_.push_back(std::move(e));
    return entries_.back();
  }

  // Text, attribute and short text of a member whose stored form is
  // `as(value)` (the value itself, or an enum's name).
  template <class Get, class As>
  static void describe(Entry<S>& e, Get get, As as) {
    e.text = [get, as](const S& s) { return exact_text(as(get(s))); };
    e.text_of_short_ = [get, as](const S& s) { return short_text(as(get(s))); };
    e.attribute = [get, as](const S& s) { return attribute_value(as(get(s))); };
  }

  template <class T>
  static AttributeValue attribute_value(const T& v) {
    if constexpr (std::is_same_v<T, double>)
      return v;
    else if constexpr (std::is_same_v<T, std::string>)
      return v;
    else
      return static_cast<std::int64_t>(v);
  }

  template <class T>
  static auto schema_value(const T& v) {
    if constexpr (std::is_same_v<T, std::uint64_t>)
      return static_cast<std::int64_t>(v);
    else
      return v;
  }

  template <class T>
  static T read_value(const Config& c, const std::string& key) {
    if constexpr (std::is_same_v<T, double>)
      return c.get_real(key);
    else if constexpr (std::is_same_v<T, bool>)
      return c.get_bool(key);
    else if constexpr (std::is_same_v<T, std::string>)
      return c.get_string(key);
    else
      return static_cast<T>(c.get_int(key));
  }

  std::vector<const Entry<S>*> sorted(int Entry<S>::*position) const {
    std::vector<const Entry<S>*> out;
    for (const auto& e : entries_)
      if (e.*position >= 0) out.push_back(&e);
    std::stable_sort(out.begin(), out.end(), [position](auto* a, auto* b) { return a->*position < b->*position; });
    return out;
  }

  std::string stage_;
  TextForm form_;
  std::vector<Entry<S>> entries_;
};

}  // namespace dinv::settings

#include "client/render.h"

namespace sluice {

std::string render_state(const control::State& state, const control::ServerHello& hello) {
  std::string out =
      "generation " + std::to_string(state.generation) + ", digest " + to_hex(state.digest) + "\n";
  for (const control::PifInfo& pif : hello.pifs) {
    out += pif.name;
    out += '\n';
    const Table& table = state.tables.of(pif.pif);
    if (table.rules.empty()) out += "    (no rules)\n";
    for (const Rule& rule : table.rules) {
      out += "    ";
      out += format_rule(rule);
      out += '\n';
    }
  }
  return out;
}

}  // namespace sluice

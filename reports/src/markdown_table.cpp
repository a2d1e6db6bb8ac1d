#include "hnf/reports/markdown_table.h"

#include "hnf/proofs/error.h"

namespace hnf::reports {
namespace {

std::string escape_cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += "<br>";
    else if (c != '\r') out += c;
  }
  return out;
}

}  // namespace

MarkdownTable::MarkdownTable(std::vector<Column> columns) : columns_(std::move(columns)) {
  HNF_ASSERT(!columns_.empty(), "a table needs at least one column");
}

void MarkdownTable::add_row(std::vector<std::string> cells) {
  HNF_ASSERT(cells.size() == columns_.size(), "row cell count differs from column count");
  rows_.push_back(std::move(cells));
}

std::string MarkdownTable::render() const {
  std::string out = "|";
  for (const auto& c : columns_) out += " " + escape_cell(c.title) + " |";
  out += "\n|";
  for (const auto& c : columns_) out += c.align == Align::kRight ? " ---: |" : " --- |";
  out += "\n";
  for (const auto& row : rows_) {
    out += "|";
    for (const auto& cell : row) out += " " + escape_cell(cell) + " |";
    out += "\n";
  }
  return out;
}

}  // namespace hnf::reports

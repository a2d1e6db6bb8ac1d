// A Markdown (GitHub-flavoured) table, the building block of the audit and CI reports.
#pragma once

#include <string>
#include <vector>

namespace hnf::reports {

enum class Align { kLeft, kRight };

class MarkdownTable {
 public:
  struct Column {
    std::string title;
    Align align = Align::kLeft;
  };
  explicit MarkdownTable(std::vector<Column> columns);

  // One cell per column; throws proofs::Error(kInternal) on a count mismatch.
  void add_row(std::vector<std::string> cells);

  // Renders with '|' and newlines in cells escaped, so a cell can never break the table.
  [[nodiscard]] std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace hnf::reports

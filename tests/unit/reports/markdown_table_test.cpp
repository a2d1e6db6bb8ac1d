#include <doctest/doctest.h>

#include "hnf/proofs/error.h"
#include "hnf/reports/markdown_table.h"

using namespace hnf::reports;

TEST_CASE("markdown tables render aligned columns and escape cell content") {
  MarkdownTable table({{"method"}, {"bytes/elem", Align::kRight}});
  table.add_row({"INT4 | g32", "0.5625"});
  table.add_row({"two\nlines", "2"});
  CHECK(table.render() ==
        "| method | bytes/elem |\n"
        "| --- | ---: |\n"
        "| INT4 \\| g32 | 0.5625 |\n"
        "| two<br>lines | 2 |\n");
  CHECK_THROWS_AS(table.add_row({"only one cell"}), hnf::proofs::Error);
}

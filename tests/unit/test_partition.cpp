#include <gtest/gtest.h>

#include "dinv/core/error.h"
#include "dinv/core/progress.h"
#include "dinv/dist/partition.h"

namespace dinv::dist {
namespace {

TEST(Partition, BlocksCoverEveryUnitOnceAndBalance) {
  for (std::int64_t count : {0, 1, 5, 10, 17, 100}) {
    for (int parts : {1, 2, 3, 4, 7}) {
      std::int64_t next = 0, smallest = count, largest = 0;
      for (int p = 0; p < parts; ++p) {
        const Range r = block_of(count, parts, p);
        EXPECT_EQ(r.begin, next);
        next = r.end;
        smallest = std::min(smallest, r.size());
        largest = std::max(largest, r.size());
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(largest - smallest, 1);
      EXPECT_EQ(max_units_per_rank(count, parts), largest);
    }
  }
}

TEST(Partition, ChunksDoNotDependOnRanks) {
  EXPECT_EQ(chunk_count(10, 4), 3);
  EXPECT_EQ(chunk(10, 4, 2).begin, 8);
  EXPECT_EQ(chunk(10, 4, 2).end, 10);
  EXPECT_THROW(chunk(10, 4, 3), Error);
  EXPECT_EQ(units_of_rank(5, 2, 1), (std::vector<std::int64_t>{3, 4}));
}

TEST(Progress, ReportLineHasCountsRateAndEta) {
  Progress p("embed", 10, "units", Progress::Style::silent);
  p.set_already_done(2);
  p.advance(3, "loss 0.5");
  const auto line = p.report_line();
  EXPECT_NE(line.find("embed: 5/10 units (50.0%)"), std::string::npos) << line;
  EXPECT_NE(line.find("units/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  EXPECT_NE(line.find("loss 0.5"), std::string::npos) << line;
  EXPECT_EQ(Progress::format_duration(3725), "1:02:05");
  EXPECT_EQ(Progress::format_duration(65), "01:05");
}

// Lines style prints at most one line per interval and a last one at the end,
// but never the final count twice (the last advance may have printed it).
TEST(Progress, FinalLinePrintedOnce) {
  auto count_lines = [](double interval, int advances) {
    testing::internal::CaptureStdout();
    {
      Progress p("evaluate", advances, "images", Progress::Style::lines, interval);
      for (int i = 0; i < advances; ++i) p.advance(1);
      p.finish();
    }
    const auto out = testing::internal::GetCapturedStdout();
    const std::string final_count = std::to_string(advances) + "/" + std::to_string(advances) + " images";
    std::size_t n = 0;
    for (auto at = out.find(final_count); at != std::string::npos; at = out.find(final_count, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count_lines(0.0, 3), 1u);     // every advance prints: the end adds nothing
  EXPECT_EQ(count_lines(3600.0, 3), 1u);  // no advance prints: the end prints the count
}

}  // namespace
}  // namespace dinv::dist

// A small SVG chart writer for kvbench's reports: line charts (latency CDFs) and grouped bar
// charts (hit rate per policy, requests per worker). Self-contained SVG 1.1 text with axes,
// ticks at round numbers, a title and a legend; no scripts, no external fonts.
//
// Thread safety: plain values and pure functions.
#ifndef KVCLUSTER_TOOLS_KVBENCH_SVG_H_
#define KVCLUSTER_TOOLS_KVBENCH_SVG_H_

#include <string>
#include <utility>
#include <vector>

namespace kvc::kvbench {

struct LineSeries {
  std::string name;
  // (x, y) points, drawn in order.
  std::vector<std::pair<double, double>> points;
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<LineSeries> series;
  // Logarithmic x axis (every x must then be > 0; smaller ones are clamped to the smallest
  // positive x).
  bool log_x = false;
  int width = 720;
  int height = 420;
};

struct BarSeries {
  std::string name;
  // One value per category.
  std::vector<double> values;
};

struct BarChart {
  std::string title;
  std::string y_label;
  std::string x_label;
  std::vector<std::string> categories;
  // Each category gets one bar per series, side by side.
  std::vector<BarSeries> series;
  // A dashed horizontal line, e.g. the ideal hit rate; absent when reference_label is empty.
  double reference = 0;
  std::string reference_label;
  int width = 720;
  int height = 420;
};

std::string RenderSvg(const LineChart& chart);
std::string RenderSvg(const BarChart& chart);

// Round tick values covering [low, high]: about `count` of them, at 1, 2 or 5 times a power
// of ten. Exposed for tests.
std::vector<double> NiceTicks(double low, double high, int count);

// Escapes &, <, >, " for SVG text and attributes. Exposed for tests.
std::string XmlEscape(const std::string& text);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_SVG_H_

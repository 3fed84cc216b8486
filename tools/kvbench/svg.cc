#include "tools/kvbench/svg.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvc::kvbench {
namespace {

// A palette that stays readable for common colour-vision deficiencies (Okabe-Ito).
constexpr const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#F0E442", "#000000"};

const char* Color(size_t i) { return kColors[i % (sizeof(kColors) / sizeof(kColors[0]))]; }

// The drawing area inside the margins; the legend sits in the right margin.
struct Frame {
  double left = 72, top = 44, right = 0, bottom = 0;
  Frame(int width, int height) : right(width - 170.0), bottom(height - 56.0) {}
  double width() const { return right - left; }
  double height() const { return bottom - top; }
};

std::string FormatTick(double value) {
  if (value == 0) return "0";
  const double magnitude = std::fabs(value);
  if (magnitude >= 1e6) return absl::StrFormat("%gM", value / 1e6);
  if (magnitude >= 1e4) return absl::StrFormat("%gk", value / 1e3);
  return absl::StrFormat("%g", std::round(value * 1e6) / 1e6);
}

// On a log10 axis: the nearest 1, 2 or 5 times a power of ten at or below (above) a value.
double LogStepBelow(double log_value) {
  const double decade = std::floor(log_value + 1e-9);
  double best = decade;
  for (double factor : {2.0, 5.0}) {
    if (decade + std::log10(factor) <= log_value + 1e-9) best = decade + std::log10(factor);
  }
  return best;
}

double LogStepAbove(double log_value) {
  const double decade = std::floor(log_value - 1e-9);
  for (double factor : {2.0, 5.0, 10.0}) {
    if (decade + std::log10(factor) >= log_value - 1e-9) return decade + std::log10(factor);
  }
  return decade + 1;
}

// Ticks from 0 whose last one is at or above `high`.
std::vector<double> TicksCovering(double high, int count) {
  std::vector<double> ticks = NiceTicks(0, high, count);
  if (ticks.size() >= 2 && ticks.back() < high)
    ticks.push_back(2 * ticks.back() - ticks[ticks.size() - 2]);
  return ticks;
}

std::string Header(int width, int height, const std::string& title) {
  return absl::StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
      absl::StrFormat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
                      width, height, width, height),
      absl::StrFormat("<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height),
      absl::StrFormat("<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" "
                      "font-weight=\"bold\">%s</text>\n",
                      width / 2, XmlEscape(title)));
}

std::string AxisLabels(const Frame& frame, const std::string& x_label, const std::string& y_label) {
  std::string out;
  if (!x_label.empty()) {
    absl::StrAppendFormat(&out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                          (frame.left + frame.right) / 2, frame.bottom + 42, XmlEscape(x_label));
  }
  if (!y_label.empty()) {
    absl::StrAppendFormat(&out,
                          "<text transform=\"translate(18 %.1f) rotate(-90)\" "
                          "text-anchor=\"middle\">%s</text>\n",
                          (frame.top + frame.bottom) / 2, XmlEscape(y_label));
  }
  absl::StrAppendFormat(&out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"none\" stroke=\"#444\"/>\n",
                        frame.left, frame.top, frame.width(), frame.height());
  return out;
}

std::string Legend(const Frame& frame, const std::vector<std::string>& names, bool lines) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    const double y = frame.top + 10 + 20.0 * i;
    if (lines) {
      absl::StrAppendFormat(&out,
                            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                            "stroke=\"%s\" stroke-width=\"2.5\"/>\n",
                            frame.right + 14, y, frame.right + 38, y, Color(i));
    } else {
      absl::StrAppendFormat(&out,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"12\" "
                            "fill=\"%s\"/>\n",
                            frame.right + 18, y - 6, Color(i));
    }
    absl::StrAppendFormat(&out, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", frame.right + 44, y + 4,
                          XmlEscape(names[i]));
  }
  return out;
}

std::string YTicks(const Frame& frame, const std::vector<double>& ticks, double low, double high) {
  std::string out;
  for (double tick : ticks) {
    const double y = frame.bottom - (tick - low) / (high - low) * frame.height();
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"end\">%s</text>\n",
                          frame.left, y, frame.right, y, frame.left - 6, y + 4, FormatTick(tick));
  }
  return out;
}

}  // namespace

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double low, double high, int count) {
  if (!(high > low) || count < 1) return {low};
  const double raw_step = (high - low) / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw_step)));
  double step = power;
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    step = factor * power;
    if (step >= raw_step) break;
  }
  std::vector<double> ticks;
  for (double tick = std::ceil(low / step - 1e-9) * step; tick <= high + step * 1e-9;
       tick += step) {
    ticks.push_back(std::fabs(tick) < step * 1e-9 ? 0.0 : tick);
  }
  return ticks;
}

std::string RenderSvg(const LineChart& chart) {
  const Frame frame(chart.width, chart.height);
  double min_x = std::numeric_limits<double>::infinity(), max_x = -min_x;
  double min_positive_x = min_x;
  double min_y = 0, max_y = 0;
  for (const LineSeries& series : chart.series) {
    for (auto [x, y] : series.points) {
      min_x = std::min(min_x, x), max_x = std::max(max_x, x);
      if (x > 0) min_positive_x = std::min(min_positive_x, x);
      min_y = std::min(min_y, y), max_y = std::max(max_y, y);
    }
  }
  if (!std::isfinite(min_x)) min_x = 0, max_x = 1, min_positive_x = 1;
  auto to_axis = [&](double x) {
    return chart.log_x ? std::log10(std::max(x, min_positive_x)) : x;
  };
  double low_x = to_axis(chart.log_x ? min_positive_x : min_x), high_x = to_axis(max_x);
  if (chart.log_x) low_x = LogStepBelow(low_x), high_x = LogStepAbove(high_x);
  if (high_x <= low_x) high_x = low_x + 1;
  const std::vector<double> y_ticks = min_y < 0
                                          ? NiceTicks(min_y, max_y > min_y ? max_y : min_y + 1, 5)
                                          : TicksCovering(max_y > 0 ? max_y : 1, 5);
  const double low_y = std::min(min_y, y_ticks.front());
  const double high_y = std::max(max_y, y_ticks.back());
  auto px = [&](double x) {
    return frame.left + (to_axis(x) - low_x) / (high_x - low_x) * frame.width();
  };
  auto py = [&](double y) {
    return frame.bottom - (y - low_y) / (high_y - low_y) * frame.height();
  };

  std::string out = Header(chart.width, chart.height, chart.title);
  out += YTicks(frame, y_ticks, low_y, high_y);
  std::vector<double> x_ticks;
  if (chart.log_x) {
    for (double decade = std::floor(low_x); decade <= high_x + 1e-9; ++decade) {
      for (double factor : {1.0, 2.0, 5.0}) {
        const double value = factor * std::pow(10.0, decade);
        const double at = std::log10(value);
        if (at >= low_x - 1e-9 && at <= high_x + 1e-9 && (high_x - low_x <= 4 || factor == 1.0)) {
          x_ticks.push_back(value);
        }
      }
    }
  } else {
    x_ticks = NiceTicks(low_x, high_x, 6);
  }
  for (double tick : x_ticks) {
    const double x =
        chart.log_x ? frame.left + (std::log10(tick) - low_x) / (high_x - low_x) * frame.width()
                    : px(tick);
    if (x < frame.left - 0.5 || x > frame.right + 0.5) continue;
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"middle\">%s</text>\n",
                          x, frame.top, x, frame.bottom, x, frame.bottom + 18, FormatTick(tick));
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const LineSeries& series = chart.series[i];
    names.push_back(series.name);
    if (series.points.empty()) continue;
    std::string points;
    for (auto [x, y] : series.points) absl::StrAppendFormat(&points, "%.1f,%.1f ", px(x), py(y));
    absl::StrAppendFormat(&out,
                          "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                          "points=\"%s\"/>\n",
                          Color(i), points);
  }
  out += AxisLabels(frame, chart.x_label, chart.y_label);
  out += Legend(frame, names, /*lines=*/true);
  out += "</svg>\n";
  return out;
}

std::string RenderSvg(const BarChart& chart) {
  const Frame frame(chart.width, chart.height);
  double max_value = chart.reference_label.empty() ? 0 : chart.reference;
  for (const BarSeries& series : chart.series) {
    for (double v : series.values) max_value = std::max(max_value, v);
  }
  const std::vector<double> ticks = TicksCovering(max_value > 0 ? max_value * 1.05 : 1, 5);
  const double high = ticks.back();
  auto py = [&](double v) { return frame.bottom - v / high * frame.height(); };

  std::string out = Header(chart.width, chart.height, chart.title);
  out += YTicks(frame, ticks, 0, high);
  const size_t categories = std::max<size_t>(chart.categories.size(), 1);
  const double slot = frame.width() / categories;
  const double bar = slot * 0.8 / std::max<size_t>(chart.series.size(), 1);
  // Category labels thin out when they would overlap (64 workers).
  const size_t label_every = std::max<size_t>(1, static_cast<size_t>(std::ceil(40.0 / slot)));
  for (size_t c = 0; c < chart.categories.size(); ++c) {
    const double x0 = frame.left + slot * c + slot * 0.1;
    for (size_t s = 0; s < chart.series.size(); ++s) {
      const double value = c < chart.series[s].values.size() ? chart.series[s].values[c] : 0;
      absl::StrAppendFormat(&out,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                            "fill=\"%s\"><title>%s %s: %s</title></rect>\n",
                            x0 + bar * s, py(value), std::max(bar - 1, 0.5),
                            frame.bottom - py(value), Color(s), XmlEscape(chart.series[s].name),
                            XmlEscape(chart.categories[c]), FormatTick(value));
    }
    if (c % label_every == 0) {
      absl::StrAppendFormat(&out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                            frame.left + slot * (c + 0.5), frame.bottom + 18,
                            XmlEscape(chart.categories[c]));
    }
  }
  if (!chart.reference_label.empty()) {
    const double y = py(chart.reference);
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
                          "stroke-dasharray=\"6 4\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"end\">%s</text>\n",
                          frame.left, y, frame.right, y, frame.right - 4, y - 5,
                          XmlEscape(chart.reference_label));
  }
  out += AxisLabels(frame, chart.x_label, chart.y_label);
  std::vector<std::string> names;
  for (const BarSeries& series : chart.series) names.push_back(series.name);
  out += Legend(frame, names, /*lines=*/false);
  out += "</svg>\n";
  return out;
}

}  // namespace kvc::kvbench

#include "text/synth.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"

namespace dsmoe::text {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// Random numbers: splitmix64, reduced by modulo. The modulo bias is below 2^-50 for the small ranges used here
// and, unlike std:: distributions, the arithmetic is specified exactly, so every platform draws the same numbers.
// Draws always go into named locals, one per statement: the evaluation order of function arguments is unspecified.

class Rng {
 public:
  explicit Rng(uint64_t& state) : state_(state) {}

  uint64_t next() { return splitmix64_next(state_); }
  // Uniform integer in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(int percent) { return range(0, 99) < percent; }
  template <size_t N>
  std::string_view pick(const std::string_view (&words)[N]) {
    return words[range(0, N - 1)];
  }

 private:
  uint64_t& state_;
};

using Out = std::back_insert_iterator<std::string>;

// ---------------------------------------------------------------------------------------------------------------
// Word lists. Each domain draws from its own lists so that domains differ in vocabulary, not only in layout.

constexpr std::string_view kFirstNames[] = {"Ada",   "Tomas", "Mira", "Jonah", "Elena", "Ravi",  "Sofia", "Kenji",
                                            "Amara", "Lucas", "Ines", "Oskar", "Leila", "Felix", "Noor",  "Hugo",
                                            "Priya", "Mateo", "Yara", "Emil",  "Hana",  "Omar",  "Greta", "Tariq"};
constexpr std::string_view kLastNames[] = {"Park",     "Silva",   "Novak",  "Okafor", "Lindqvist", "Moreau", "Tanaka",
                                           "Kowalski", "Haddad",  "Rossi",  "Brandt", "Alves",     "Mehta",  "Kaur",
                                           "Dubois",   "Ivanova", "Nguyen", "Larsen", "Costa",     "Fischer"};

// Prose: a storybook register.
constexpr std::string_view kAdjectives[] = {
    "quiet",   "ancient", "bright",   "narrow",  "golden",  "restless", "pale",      "gentle",  "hidden", "broken",
    "distant", "silver",  "crooked",  "patient", "hollow",  "warm",     "forgotten", "wild",    "tall",   "heavy",
    "tiny",    "strange", "peaceful", "bitter",  "curious", "faded",    "green",     "copper",  "lonely", "steady",
    "small",   "crimson", "frozen",   "velvet",  "dusty",   "humble",   "proud",     "shallow", "sudden", "weary",
    "early",   "late",    "dark",     "soft",    "rough",   "bold",     "careful",   "honest",  "brave",  "clever",
    "silent",  "sleepy",  "misty",    "sunlit",  "windy",   "rainy",    "stone",     "wooden",  "woolen", "painted"};
constexpr std::string_view kNouns[] = {
    "river",    "lantern",  "garden",  "mountain", "harbor",  "forest", "letter",  "bridge", "window", "meadow",
    "castle",   "orchard",  "compass", "ladder",   "kettle",  "violin", "feather", "island", "candle", "mirror",
    "wagon",    "chapel",   "market",  "tower",    "cottage", "shadow", "storm",   "valley", "basket", "cloak",
    "fountain", "painting", "journal", "map",      "key",     "door",   "boat",    "song",   "fire",   "stranger",
    "merchant", "shepherd", "sailor",  "baker",    "fox",     "raven",  "horse",   "owl",    "wolf",   "deer",
    "lake",     "hill",     "road",    "path",     "field",   "cave",   "well",    "gate",   "clock",  "ribbon",
    "blanket",  "loaf",     "apple",   "pear",     "cart",    "rope",   "chest",   "coin",   "ring",   "scarf",
    "pond",     "cliff",    "shore",   "village",  "town",    "farm",   "mill",    "barn",   "stable", "library"};
constexpr std::string_view kVerbsPast[] = {
    "found",    "carried", "watched",  "followed", "painted", "mended",    "opened",   "closed",   "remembered",
    "noticed",  "guarded", "visited",  "crossed",  "lifted",  "buried",    "borrowed", "returned", "gathered",
    "polished", "studied", "admired",  "climbed",  "pushed",  "pulled",    "hid",      "chose",    "lost",
    "built",    "sold",    "bought",   "wrapped",  "traded",  "described", "ignored",  "praised",  "cleaned",
    "shared",   "counted", "measured", "sketched", "fixed",   "searched",  "held",     "kept",     "left"};
constexpr std::string_view kVerbsIntransitive[] = {
    "waited", "wandered",  "slept",    "laughed",  "trembled", "vanished", "appeared", "rested",
    "sang",   "whispered", "shivered", "glowed",   "drifted",  "lingered", "hurried",  "paused",
    "smiled", "sighed",    "listened", "returned", "settled",  "stirred",  "danced",   "fell",
    "rose",   "shone",     "faded",    "wept",     "dreamed",  "grew"};
constexpr std::string_view kAdverbs[] = {
    "slowly",   "quietly",   "suddenly", "gladly", "softly", "carefully", "eagerly", "gently",  "bravely", "silently",
    "warmly",   "patiently", "sadly",    "boldly", "calmly", "proudly",   "briefly", "kindly",  "wearily", "happily",
    "steadily", "rarely",    "finally",  "often",  "nearly", "barely",    "openly",  "swiftly", "lightly", "deeply"};
constexpr std::string_view kPlaces[] = {"village", "harbor", "valley", "forest", "market",  "castle", "orchard",
                                        "meadow",  "chapel", "town",   "mill",   "library", "abbey",  "inn"};
constexpr std::string_view kPrepositions[] = {"near",   "beside", "beyond", "under", "behind",
                                              "across", "above",  "below",  "past",  "toward"};
constexpr std::string_view kTimes[] = {"In the morning",
                                       "Later that evening",
                                       "Before the storm",
                                       "At dawn",
                                       "Long ago",
                                       "Every autumn",
                                       "After the harvest",
                                       "Near midnight",
                                       "Once upon a time",
                                       "On the third day",
                                       "When the bells rang",
                                       "Before long",
                                       "Early in the spring",
                                       "Late in the winter",
                                       "At the end of summer",
                                       "That night",
                                       "Years later",
                                       "In the old days",
                                       "Just before sunset",
                                       "By the next morning"};
constexpr std::string_view kProseTemplates[] = {
    "{T}, {N} {V} the {A} {O} {R} the {O}.",
    "The {A} {O} {I} {D} {R} the {O}.",
    "{N} thought the {O} was {A}, but said nothing.",
    "Nobody in the {P} remembered the {A} {O}.",
    "It was a {A} day, and the {O} {I} {D}.",
    "{T}, the {O} {I} and the {A} {O} {I}.",
    "{N} and {N} {V} the {O} together.",
    "The {O} was {A} and {A}, like a {O} {R} the {O}.",
    "{D}, {N} {V} a {A} {O} from the {O}.",
    "There was once a {A} {O} that stood {R} the {A} {P}.",
    "{N} {I} {D}, for the {O} had {V} the {O}.",
    "Above all, the {O} {V} the {A} {O} {D}.",
};

// Dialogue: a chatty register with its own everyday vocabulary.
constexpr std::string_view kItems[] = {"umbrella",   "keys",     "ticket",   "charger",  "laptop",   "notebook",
                                       "headphones", "wallet",   "backpack", "coffee",   "sandwich", "phone",
                                       "jacket",     "passport", "receipt",  "printer",  "tablet",   "snacks",
                                       "bike",       "calendar", "invite",   "password", "slides",   "package"};
constexpr std::string_view kWhen[] = {"tomorrow", "on Friday", "at noon",   "tonight",      "next week",
                                      "at six",   "on Monday", "later",     "this weekend", "after lunch",
                                      "at ten",   "on Sunday", "right now", "in an hour"};
constexpr std::string_view kSpots[] = {"the station", "the cafe",   "the office", "the gym",     "my desk",
                                       "the kitchen", "the lobby",  "the car",    "the library", "the hallway",
                                       "the airport", "your place", "the park",   "the store"};
constexpr std::string_view kFeelings[] = {"great", "tired", "fine", "busy", "excited", "nervous", "okay", "sleepy"};
constexpr std::string_view kQuestions[] = {
    "Have you seen my {X}?",          "Are we still meeting {W}?", "Can you bring the {X} to {S}?",
    "How are you feeling today?",     "Did you remember the {X}?", "Where should we meet {W}?",
    "Do you want to grab lunch {W}?", "Is the {X} still at {S}?",  "Could you send me the {X} {W}?",
    "What time works for you {W}?",
};
constexpr std::string_view kAnswers[] = {
    "Yes, I left it at {S}.",          "Sure, see you {W}!",
    "I'm {F}, thanks for asking.",     "Not yet, I'll check {S} {W}.",
    "Sorry, I forgot the {X} again.",  "Let's meet at {S} {W}.",
    "No problem, I'll bring the {X}.", "I think it's somewhere in {S}.",
    "Honestly I'm {F}, but okay.",     "Sounds good to me.",
    "Thanks! I owe you one.",          "Hmm, maybe {W} instead?",
};

// Code: identifiers.
constexpr std::string_view kCodeVerbs[] = {"compute", "count", "find",  "merge", "scale",   "filter",    "update",
                                           "load",    "parse", "check", "sum",   "collect", "normalize", "clamp",
                                           "select",  "build", "reset", "apply", "track",   "index"};
constexpr std::string_view kCodeNouns[] = {"values", "items",  "scores",  "nodes",  "rows",   "weights",
                                           "tokens", "prices", "samples", "events", "counts", "edges",
                                           "points", "frames", "entries", "blocks"};
constexpr std::string_view kCodeScalars[] = {"total", "best", "result", "acc", "peak", "sum_so_far", "tally"};
constexpr std::string_view kCodeLimits[] = {"limit", "threshold", "cap", "bound", "cutoff", "floor"};
constexpr std::string_view kCompare[] = {">", "<", ">=", "<=", "==", "!="};
constexpr std::string_view kUpdateOps[] = {"+=", "-=", "+=", "*="};

// Records: a registry of people.
constexpr std::string_view kCities[] = {
    "Lisbon", "Oslo",  "Nairobi", "Osaka",  "Lima",   "Krakow", "Dublin", "Seoul",   "Porto", "Quito",
    "Hanoi",  "Tunis", "Zagreb",  "Accra",  "Bergen", "Leeds",  "Austin", "Calgary", "Perth", "Cork",
    "Graz",   "Malmo", "Turin",   "Rennes", "Ghent",  "Pune",   "Cusco",  "Tallinn", "Riga",  "Bilbao"};
constexpr std::string_view kRoles[] = {"engineer", "nurse",   "teacher", "chemist", "pilot",  "designer",
                                       "analyst",  "plumber", "editor",  "curator", "farmer", "librarian"};
constexpr std::string_view kStatuses[] = {"active", "inactive", "pending", "suspended"};

// ---------------------------------------------------------------------------------------------------------------
// Template expansion: "{K}" is replaced by a random word of the list that the letter K names.

std::string_view word_for(Rng& rng, char key) {
  switch (key) {
    case 'N': return rng.pick(kFirstNames);
    case 'A': return rng.pick(kAdjectives);
    case 'O': return rng.pick(kNouns);
    case 'V': return rng.pick(kVerbsPast);
    case 'I': return rng.pick(kVerbsIntransitive);
    case 'D': return rng.pick(kAdverbs);
    case 'R': return rng.pick(kPrepositions);
    case 'P': return rng.pick(kPlaces);
    case 'T': return rng.pick(kTimes);
    case 'X': return rng.pick(kItems);
    case 'W': return rng.pick(kWhen);
    case 'S': return rng.pick(kSpots);
    case 'F': return rng.pick(kFeelings);
  }
  fail("synthetic corpus: unknown template key '{}'", key);  // a bug in the tables above
}

void expand(Rng& rng, std::string_view tmpl, std::string& out) {
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '{' && i + 2 < tmpl.size() && tmpl[i + 2] == '}') {
      out += word_for(rng, tmpl[i + 1]);
      i += 2;
    } else {
      out += tmpl[i];
    }
  }
}

// A sentence template may start with a lowercase word ("{D}, ...": "slowly, ..."); sentences start capitalised.
void capitalise_from(std::string& s, size_t pos) {
  if (pos < s.size() && s[pos] >= 'a' && s[pos] <= 'z') s[pos] = static_cast<char>(s[pos] - 'a' + 'A');
}

// ---------------------------------------------------------------------------------------------------------------
// Domains. Each writes one document into `out` (empty on entry), lines separated by a single '\n'.

// One arithmetic operation on `a`. Results stay non-negative integers of moderate size: subtraction never goes
// below zero and division is exact, so every statement is true in integer arithmetic.
struct Step {
  int64_t a;
  char op;
  int64_t b, result;
};

Step arithmetic_step(Rng& rng, int64_t a) {
  for (;;) {  // addition always succeeds, so this ends
    const int64_t op = rng.range(0, 3);
    if (op == 0) {
      const int64_t b = rng.range(1, a < 100 ? 99 : 999);
      return {a, '+', b, a + b};
    }
    if (op == 1 && a >= 1) {
      const int64_t b = rng.range(1, a);
      return {a, '-', b, a - b};
    }
    if (op == 2 && a <= 20000) {
      const int64_t b = a < 100 ? rng.range(2, 99) : rng.range(2, 9);
      return {a, '*', b, a * b};
    }
    if (op == 3 && a >= 2) {
      const int64_t start = rng.range(0, 10);
      for (int64_t k = 0; k < 11; ++k) {  // first exact divisor in 2..12, from a random starting point
        const int64_t d = 2 + (start + k) % 11;
        if (a % d == 0 && a != d) return {a, '/', d, a / d};
      }
    }
  }
}

// Lines of single statements ("37 + 48 = 85") and chains ("12 * 7 = 84; 84 - 9 = 75").
void arithmetic_doc(Rng& rng, std::string& out) {
  const int64_t lines = rng.range(3, 8);
  for (int64_t line = 0; line < lines; ++line) {
    if (line > 0) out += '\n';
    const int64_t steps = rng.chance(50) ? 1 : rng.range(2, 4);
    int64_t value = rng.chance(70) ? rng.range(1, 99) : rng.range(100, 999);
    for (int64_t s = 0; s < steps; ++s) {
      const Step st = arithmetic_step(rng, value);
      if (s > 0) out += "; ";
      fmt::format_to(Out(out), "{} {} {} = {}", st.a, st.op, st.b, st.result);
      value = st.result;
    }
  }
}

// One paragraph of templated sentences.
void prose_doc(Rng& rng, std::string& out) {
  const int64_t sentences = rng.range(3, 8);
  for (int64_t i = 0; i < sentences; ++i) {
    if (i > 0) out += ' ';
    const size_t start = out.size();
    expand(rng, rng.pick(kProseTemplates), out);
    capitalise_from(out, start);
  }
}

// Alternating turns between two different speakers.
void dialogue_doc(Rng& rng, std::string& out) {
  const int64_t a = rng.range(0, std::size(kFirstNames) - 1);
  const int64_t offset = rng.range(1, std::size(kFirstNames) - 1);
  const std::string_view speakers[2] = {kFirstNames[a], kFirstNames[(a + offset) % std::size(kFirstNames)]};
  const int64_t turns = rng.range(2, 6);
  for (int64_t t = 0; t < turns; ++t) {
    if (t > 0) out += '\n';
    out += speakers[t % 2];
    out += ": ";
    expand(rng, t % 2 == 0 ? rng.pick(kQuestions) : rng.pick(kAnswers), out);
  }
}

// A table of people: the same fields on every line of one document (a schema), a random subset per document.
void records_doc(Rng& rng, std::string& out) {
  const bool has_age = rng.chance(60), has_city = rng.chance(60), has_role = rng.chance(50);
  const bool has_email = rng.chance(40), has_joined = rng.chance(40), has_status = rng.chance(40);
  const int64_t rows = rng.range(2, 7);
  for (int64_t r = 0; r < rows; ++r) {
    if (r > 0) out += '\n';
    const std::string_view first = rng.pick(kFirstNames), last = rng.pick(kLastNames);
    fmt::format_to(Out(out), "name: {} {}", first, last);
    if (has_age) fmt::format_to(Out(out), " | age: {}", rng.range(18, 90));
    if (has_city) fmt::format_to(Out(out), " | city: {}", rng.pick(kCities));
    if (has_role) fmt::format_to(Out(out), " | role: {}", rng.pick(kRoles));
    if (has_email) {
      out += " | email: ";
      for (char c : first) out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      out += '.';
      for (char c : last) out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      out += "@example.org";
    }
    if (has_joined) {
      const int64_t year = rng.range(1995, 2024), month = rng.range(1, 12), day = rng.range(1, 28);
      fmt::format_to(Out(out), " | joined: {}-{:02}-{:02}", year, month, day);
    }
    if (has_status) fmt::format_to(Out(out), " | status: {}", rng.pick(kStatuses));
    const int64_t hex = rng.range(0, 0xFFFF), suffix = rng.range(0, 99);
    fmt::format_to(Out(out), " | id: {:04X}-{:02}", hex, suffix);
  }
}

// Code: one function, Python or C, from a small statement grammar. Indentation is 4 spaces; no blank lines, since
// a blank line separates documents.
class CodeWriter {
 public:
  CodeWriter(Rng& rng, std::string& out, bool python) : rng_(rng), out_(out), py_(python) {
    coll_ = rng.pick(kCodeNouns);
    acc_ = rng.pick(kCodeScalars);
    limit_ = rng.pick(kCodeLimits);
  }

  void function() {
    const std::string_view verb = rng_.pick(kCodeVerbs);
    const std::string name = fmt::format("{}_{}", verb, coll_);
    const int64_t init = rng_.range(0, 9);
    if (py_) {
      fmt::format_to(Out(out_), "def {}({}, {}):\n    {} = {}\n", name, coll_, limit_, acc_, init);
    } else {
      fmt::format_to(Out(out_), "int {}(const int* {}, int n, int {}) {{\n    int {} = {};\n", name, coll_, limit_,
                     acc_, init);
    }
    // Every function walks its collection; a statement before or after the loop varies the shape.
    if (rng_.chance(40)) statement(1, /*in_loop=*/false);
    loop(1);
    if (rng_.chance(40)) statement(1, /*in_loop=*/false);
    if (py_)
      fmt::format_to(Out(out_), "    return {}", acc_);
    else
      fmt::format_to(Out(out_), "    return {};\n}}", acc_);
    if (py_ && rng_.chance(50)) {
      const int64_t a = rng_.range(1, 20), b = rng_.range(1, 20), c = rng_.range(1, 20), lim = rng_.range(1, 20);
      fmt::format_to(Out(out_), "\nprint({}([{}, {}, {}], {}))", name, a, b, c, lim);
    }
  }

 private:
  Rng& rng_;
  std::string& out_;
  bool py_;
  std::string_view coll_, acc_, limit_;

  void indent(int depth) { out_.append(4 * depth, ' '); }
  void close(int depth) {  // C closes blocks with a brace; Python by dedenting
    if (!py_) {
      indent(depth);
      out_ += "}\n";
    }
  }
  void put_element() {
    if (py_)
      out_ += "item";
    else
      fmt::format_to(Out(out_), "{}[i]", coll_);
  }

  void block(int depth, bool in_loop) {
    const int64_t n = rng_.range(1, 3);
    for (int64_t i = 0; i < n; ++i) statement(depth, in_loop);
  }

  void statement(int depth, bool in_loop) {
    const int64_t kind = rng_.range(0, 4);
    if (kind == 0 && !in_loop && depth < 3) return loop(depth);
    if (kind == 1 && in_loop && depth < 4) return branch(depth, in_loop);
    if (kind == 2 && depth < 3) return shrink_while(depth);
    if (kind == 3) return call(depth, in_loop);
    update(depth, in_loop);
  }

  void loop(int depth) {
    indent(depth);
    if (py_)
      fmt::format_to(Out(out_), "for item in {}:\n", coll_);
    else
      out_ += "for (int i = 0; i < n; ++i) {\n";
    block(depth + 1, /*in_loop=*/true);
    close(depth);
  }

  void branch(int depth, bool in_loop) {
    const std::string_view cmp = rng_.pick(kCompare);
    indent(depth);
    out_ += py_ ? "if " : "if (";
    put_element();
    if (py_)
      fmt::format_to(Out(out_), " {} {}:\n", cmp, limit_);
    else
      fmt::format_to(Out(out_), " {} {}) {{\n", cmp, limit_);
    block(depth + 1, in_loop);
    if (rng_.chance(30)) {
      indent(depth);
      out_ += py_ ? "else:\n" : "} else {\n";
      block(depth + 1, in_loop);
    }
    close(depth);
  }

  void shrink_while(int depth) {
    indent(depth);
    if (py_)
      fmt::format_to(Out(out_), "while {} > {}:\n", acc_, limit_);
    else
      fmt::format_to(Out(out_), "while ({} > {}) {{\n", acc_, limit_);
    indent(depth + 1);
    out_ += acc_;
    out_ += py_ ? " //= 2\n" : " /= 2;\n";
    close(depth);
  }

  void call(int depth, bool in_loop) {
    indent(depth);
    if (py_)
      fmt::format_to(Out(out_), "print({})\n", in_loop && rng_.chance(50) ? "item" : acc_);
    else
      fmt::format_to(Out(out_), "printf(\"%d\\n\", {});\n", acc_);
  }

  void update(int depth, bool in_loop) {
    const std::string_view op = rng_.pick(kUpdateOps);
    indent(depth);
    fmt::format_to(Out(out_), "{} {} ", acc_, op);
    if (in_loop && rng_.chance(70))
      put_element();
    else
      fmt::format_to(Out(out_), "{}", rng_.range(1, 9));
    out_ += py_ ? "\n" : ";\n";
  }
};

void code_doc(Rng& rng, std::string& out) {
  const bool python = rng.chance(50);
  CodeWriter(rng, out, python).function();
}

using DomainFn = void (*)(Rng&, std::string&);
struct Domain {
  std::string name;
  DomainFn write;
};

const std::vector<Domain>& domains() {
  static const std::vector<Domain> d = {{"arithmetic", arithmetic_doc},
                                        {"prose", prose_doc},
                                        {"code", code_doc},
                                        {"records", records_doc},
                                        {"dialogue", dialogue_doc}};
  return d;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing: PATH.tmp then rename, so an error never leaves a half-written file under the final name.

class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    check(file_ != nullptr, "cannot write synthetic corpus file {}: {}", tmp_, std::strerror(errno));
  }
  ~AtomicFile() {
    if (file_ != nullptr) {  // not committed: an error is on its way out
      std::fclose(file_);
      std::remove(tmp_.c_str());
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view data) {
    check(std::fwrite(data.data(), 1, data.size(), file_) == data.size(), "cannot write {}: {}", tmp_,
          std::strerror(errno));
  }
  void commit() {
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!closed) {
      std::remove(tmp_.c_str());
      fail("cannot write {}: {}", tmp_, std::strerror(errno));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      std::remove(tmp_.c_str());
      fail("cannot rename {} to {}: {}", tmp_, path_, why);
    }
  }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

uint32_t domain_index(const std::string& name) {
  for (size_t i = 0; i < domains().size(); ++i)
    if (domains()[i].name == name) return static_cast<uint32_t>(i);
  fail("synthetic corpus: unknown domain '{}'", name);
}

struct DocSpan {
  int64_t offset, length;
  uint32_t domain;
};

// The sidecar is streamed, one document per line: a large corpus has millions of documents, too many for an
// in-memory nlohmann::json tree.
void write_sidecar(AtomicFile& file, uint64_t seed, const SynthStats& stats, const std::vector<DocSpan>& docs) {
  nlohmann::json per_domain = nlohmann::json::object();
  for (const auto& [name, n] : stats.docs_per_domain)
    per_domain[name] = {{"documents", n}, {"bytes", stats.bytes_per_domain.at(name)}};
  std::string buf = fmt::format("{{\"seed\": {}, \"bytes\": {}, \"documents\": {}, \"domains\": {},\n\"docs\": [", seed,
                                stats.bytes, stats.documents, per_domain.dump());
  for (size_t i = 0; i < docs.size(); ++i) {
    fmt::format_to(Out(buf), "{}\n{{\"offset\": {}, \"length\": {}, \"domain\": \"{}\"}}", i == 0 ? "" : ",",
                   docs[i].offset, docs[i].length, domains()[docs[i].domain].name);
    if (buf.size() > (1 << 20)) {
      file.write(buf);
      buf.clear();
    }
  }
  buf += "\n]}\n";
  file.write(buf);
}

}  // namespace

const std::vector<std::string>& synth_domains() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Domain& d : domains()) n.push_back(d.name);
    return n;
  }();
  return names;
}

SynthGenerator::SynthGenerator(uint64_t seed) : state_(seed) {}

SynthDoc SynthGenerator::next() {
  Rng rng(state_);
  const Domain& d = domains()[rng.range(0, domains().size() - 1)];
  SynthDoc doc{d.name, {}};
  d.write(rng, doc.text);
  return doc;
}

SynthStats write_synth_corpus(const std::string& path, int64_t bytes, uint64_t seed) {
  check(bytes > 0, "synthetic corpus size must be positive, got {} bytes", bytes);
  check(!path.empty(), "synthetic corpus path is empty");
  AtomicFile corpus(path), sidecar(path + ".json");  // both opened first: an unwritable place fails before work

  SynthStats stats;
  for (const std::string& name : synth_domains()) stats.docs_per_domain[name] = stats.bytes_per_domain[name] = 0;
  std::vector<DocSpan> spans;
  SynthGenerator gen(seed);
  std::string buf;
  while (stats.bytes < bytes) {
    const SynthDoc doc = gen.next();
    if (stats.documents > 0) buf += "\n\n";
    buf += doc.text;
    const int64_t length = static_cast<int64_t>(doc.text.size());
    const int64_t offset = stats.documents > 0 ? stats.bytes + 2 : 0;
    spans.push_back({offset, length, domain_index(doc.domain)});
    stats.bytes = offset + length;
    stats.documents += 1;
    stats.docs_per_domain[doc.domain] += 1;
    stats.bytes_per_domain[doc.domain] += length;
    if (buf.size() > (1 << 20)) {
      corpus.write(buf);
      buf.clear();
    }
  }
  corpus.write(buf);
  write_sidecar(sidecar, seed, stats, spans);
  corpus.commit();
  sidecar.commit();
  return stats;
}

}  // namespace dsmoe::text

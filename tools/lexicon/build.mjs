// Writes src/phrases/lexicon.txt from wink-lexicon (MIT; winkjs, partly derived from fnTBL's
// lexicon): each word's parts of speech, most frequent first, folded from Penn Treebank tags to
// the classes the phrase finder tells apart. Run by `./build.sh lexicon`.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const lexicon = require("wink-lexicon/src/lexicon.js");
const version = require("wink-lexicon/package.json").version;

// One letter per class; the order of first appearance is kept.
const CLASS = {
  NN: "n", NNP: "n", NNS: "s", NNPS: "s",
  VB: "v", VBP: "v", VBZ: "z", VBG: "g", VBD: "e", VBN: "e", MD: "k",
  JJ: "j", JJR: "j", JJS: "j",
  RB: "r", RBR: "r", RBS: "r", WRB: "r", RP: "r",
  DT: "d", PDT: "d", WDT: "d", "PRP$": "d", "WP$": "d",
  IN: "p", TO: "p", CC: "c", PRP: "o", WP: "o", EX: "o", CD: "m",
};

const lines = [];
for (const word of Object.keys(lexicon).sort()) {
  if (!/^[a-z][a-z'-]*$/.test(word)) continue;
  let classes = "";
  for (const tag of lexicon[word]) {
    const c = CLASS[tag] ?? "x";
    if (!classes.includes(c)) classes += c;
  }
  lines.push(`${word} ${classes}`);
}
const header = [
  `# Parts of speech of ${lines.length} English words, most frequent first, from wink-lexicon ${version}`,
  "# (MIT License, copyright GRAYPE Systems Private Limited; partly derived from fnTBL's lexicon,",
  "# copyright Johns Hopkins University, Radu Florian and Grace Ngai, MIT-like licence).",
  "# Written by tools/lexicon/build.mjs. Classes: n noun, s plural noun, v verb's base form, z its",
  "# third person singular, g its -ing form, e its past forms, k modal, j adjective, r adverb,",
  "# d determiner, p preposition, c conjunction, o pronoun, m number, x other.",
];
writeFileSync(new URL("../../src/phrases/lexicon.txt", import.meta.url), header.concat(lines).join("\n") + "\n");
console.log(`src/phrases/lexicon.txt: ${lines.length} words`);

// Code 128 (ISO/IEC 15417), code set B, drawn as SVG: the packing slip's barcode, made
// here so that nothing is loaded from elsewhere. Set B covers every printable ASCII
// character, which is all an order code or RMA (letters, digits, dashes) needs.

// Bar/space widths (in modules) of symbol values 0..106, from the standard's table:
// each symbol is bar, space, bar, space, bar, space (11 modules); 106 (stop) adds a bar.
export const PATTERNS = [
  "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212",
  "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221",
  "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122", "321221",
  "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123", "131321",
  "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331", "132131",
  "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311", "213131",
  "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411", "431111",
  "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
  "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111", "111242",
  "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
  "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311",
  "113141", "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
];
export const START_B = 104;
export const STOP = 106;
const QUIET_ZONE = 10; // modules of white either side, as the standard asks

/** The symbol values of `text` in code set B: start, data, check symbol, stop. */
export function symbols(text) {
  const values = [START_B];
  for (const char of String(text)) {
    const code = char.codePointAt(0);
    if (code < 32 || code > 127) throw new RangeError(`Code 128 B cannot encode ${JSON.stringify(char)}`);
    values.push(code - 32);
  }
  // check symbol: start value plus each data value times its position, modulo 103
  let sum = START_B;
  for (let i = 1; i < values.length; i++) sum += values[i] * i;
  values.push(sum % 103);
  values.push(STOP);
  return values;
}

/** The barcode as a string of modules, "1" for bar and "0" for space (no quiet zone). */
export function modules(text) {
  let out = "";
  for (const value of symbols(text)) {
    const widths = PATTERNS[value];
    for (let i = 0; i < widths.length; i++) out += (i % 2 === 0 ? "1" : "0").repeat(Number(widths[i]));
  }
  return out;
}

/** An <svg> of `text`'s barcode: one <rect> per bar, scaled to `height` units high. */
export function barcodeSvg(text, { height = 60, moduleWidth = 2 } = {}) {
  const NS = "http://www.w3.org/2000/svg";
  const bits = modules(text);
  const width = (bits.length + 2 * QUIET_ZONE) * moduleWidth;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Barcode ${text}`);
  svg.setAttribute("class", "barcode");
  svg.setAttribute("preserveAspectRatio", "none"); // print.css stretches it to the label
  svg.dataset.modules = bits;
  const background = document.createElementNS(NS, "rect");
  background.setAttribute("width", String(width));
  background.setAttribute("height", String(height));
  background.setAttribute("fill", "#fff");
  svg.append(background);
  let i = 0;
  while (i < bits.length) {
    if (bits[i] === "1") {
      let run = 1;
      while (bits[i + run] === "1") run++;
      const bar = document.createElementNS(NS, "rect");
      bar.setAttribute("x", String((QUIET_ZONE + i) * moduleWidth));
      bar.setAttribute("width", String(run * moduleWidth));
      bar.setAttribute("height", String(height));
      bar.setAttribute("fill", "#000");
      svg.append(bar);
      i += run;
    } else {
      i++;
    }
  }
  return svg;
}

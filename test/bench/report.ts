// The bench's results: one table of ratios against each peer, the whole record as JSON, and an SVG chart.

export interface Ratio {
  /** what was measured, e.g. "TFTP 32 MiB, windowsize 64" */
  what: string;
  peer: string;
  ours: number;
  theirs: number;
  unit: string;
  /** ours / theirs, oriented so that above 1 is better for us */
  ratio: number;
  goal?: number;
}

const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(3));

export function ratioTable(rows: Ratio[]): string {
  const cells = [
    ['MEASURE', 'PEER', 'BESKAR7', 'PEER', 'UNIT', 'RATIO', 'GOAL'],
    ...rows.map((r) => [
      r.what,
      r.peer,
      fmt(r.ours),
      fmt(r.theirs),
      r.unit,
      `${r.ratio.toFixed(2)}x`,
      r.goal === undefined ? '-' : `>= ${r.goal}x ${r.ratio >= r.goal ? 'met' : 'MISSED'}`,
    ]),
  ];
  const width = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  return cells
    .map((c) =>
      c
        .map((v, i) => v.padEnd(width[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * Left: HTTP throughput against the number of concurrent downloads, one line per server. Right: every
 * ratio as a bar, green when it meets its goal, with 1x (parity) dashed and each row's goal as a tick.
 */
export function chart(http: { name: string; points: { n: number; mibps: number }[] }[], rows: Ratio[]): string {
  const W = 1200;
  const H = 60 + Math.max(300, rows.length * 26 + 40);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<title>Beskar7 against dnsmasq, atftpd, tftpd-hpa and nginx (make bench)</title>',
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="20" y="24" font-size="15" font-weight="bold">Beskar7 against its peers (make bench)</text>`,
  ];
  // throughput against N (log scale in N)
  const [x0, y0, w, h] = [60, 60, 340, 260];
  const ns = [...new Set(http.flatMap((s) => s.points.map((p) => p.n)))].sort((a, b) => a - b);
  const maxY = Math.max(1, ...http.flatMap((s) => s.points.map((p) => p.mibps))) * 1.1;
  const xOf = (n: number) => x0 + (ns.length < 2 ? w / 2 : (Math.log(n / ns[0]!) / Math.log(ns.at(-1)! / ns[0]!)) * w);
  const yOf = (v: number) => y0 + h - (v / maxY) * h;
  out.push(`<text x="${x0}" y="${y0 - 12}">HTTP, 256 MiB each: MiB/s against concurrent downloads</text>`);
  out.push(`<line x1="${x0}" y1="${y0 + h}" x2="${x0 + w}" y2="${y0 + h}" stroke="black"/>`);
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + h}" stroke="black"/>`);
  for (const n of ns) out.push(`<text x="${xOf(n)}" y="${y0 + h + 16}" text-anchor="middle">N=${n}</text>`);
  for (let k = 0; k <= 4; k++) {
    const v = (maxY / 4) * k;
    out.push(`<text x="${x0 - 6}" y="${yOf(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  }
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  http.forEach((s, i) => {
    const pts = s.points.map((p) => `${xOf(p.n).toFixed(1)},${yOf(p.mibps).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${colors[i % 4]}" stroke-width="2"/>`);
    out.push(`<text x="${x0 + 10}" y="${y0 + 14 + i * 16}" fill="${colors[i % 4]}">${esc(s.name)}</text>`);
  });
  // ratio bars
  const [bx, by, bw] = [440, 60, 740];
  const maxR = Math.max(2, ...rows.map((r) => r.ratio));
  // labels end here, right-aligned: the longest (the DHCP rows) fits between the HTTP plot and the bars
  const lx = bx + 330;
  const rx = (r: number) => lx + 6 + (r / maxR) * (bw - 400);
  out.push(`<text x="${lx}" y="${by - 12}">ours / peer (above 1x: better than the peer; | the goal)</text>`);
  rows.forEach((r, i) => {
    const y = by + i * 26;
    out.push(`<text x="${lx}" y="${y + 14}" text-anchor="end" font-size="11">${esc(`${r.what} vs ${r.peer}`)}</text>`);
    const fill = r.goal === undefined ? '#888' : r.ratio >= r.goal ? '#2ca02c' : '#d62728';
    out.push(
      `<rect x="${lx + 6}" y="${y + 3}" width="${(rx(r.ratio) - lx - 6).toFixed(1)}" height="16" fill="${fill}"/>`,
    );
    if (r.goal !== undefined)
      out.push(
        `<line x1="${rx(r.goal)}" y1="${y}" x2="${rx(r.goal)}" y2="${y + 22}" stroke="black" stroke-width="2"/>`,
      );
    out.push(`<text x="${Math.max(rx(r.ratio), rx(r.goal ?? 0)) + 4}" y="${y + 15}">${r.ratio.toFixed(2)}x</text>`);
  });
  const yEnd = by + rows.length * 26;
  out.push(`<line x1="${rx(1)}" y1="${by}" x2="${rx(1)}" y2="${yEnd}" stroke="black" stroke-dasharray="4 3"/>`);
  out.push(`<text x="${rx(1)}" y="${yEnd + 14}" text-anchor="middle">1x</text>`);
  out.push('</svg>');
  return out.join('\n');
}

// The lane layout and the final reduction shared by gemv.wgsl and gemv_q.wgsl: a 256-thread workgroup takes ROWS
// (host constant) output rows, LANES lanes per row, each lane with partial sums for up to MMAX token rows. The
// including shader declares the uniform `p` (M, N, hasBias), `bias` ([N] f32) and `y` ([M, N] f32).

const LANES: u32 = 32u;
const MMAX: u32 = 8u;

var<workgroup> red: array<f32, ROWS * MMAX * LANES>;  // [ROWS, MMAX, LANES] lane partials

const_assert ROWS * LANES == 256u;  // the workgroup size of the including entry point

// Sums row r's lane partials (one barrier) and writes y[m, n] (+ bias) for every token row m < M.
fn gemv_reduce(acc: array<f32, MMAX>, r: u32, lane: u32, n: u32) {
  for (var m = 0u; m < MMAX; m++) {
    red[(r * MMAX + m) * LANES + lane] = acc[m];
  }
  workgroupBarrier();
  if (n < p.N && lane < p.M) {
    let o = (r * MMAX + lane) * LANES;
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += red[o + l]; }
    if (p.hasBias != 0u) { s += bias[n]; }
    y[lane * p.N + n] = s;
  }
}

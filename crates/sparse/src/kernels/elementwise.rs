//! Layers that treat each value on its own: a per-channel affine map, sums, ReLU.

use super::{Kernel, MulAdd, relu};

pub(super) struct Affine<'a> {
    pub input: [usize; 3],
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub relu: bool,
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for Affine<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let [channels, height, width] = self.input;
        let plane = height * width * T;
        for c in 0..channels {
            let (src, out) = (&self.x[c * plane..][..plane], &mut self.y[c * plane..][..plane]);
            let (a, b) = (self.scale[c], self.shift[c]);
            for (o, &v) in out.iter_mut().zip(src) {
                let v = M::mul_add(v, a, b);
                *o = if self.relu { relu(v) } else { v };
            }
        }
    }
}

/// `y = xs[0] + xs[1] + ...`, summed in that order, as PyTorch's chained `+` would.
pub(super) struct Add<'a> {
    pub xs: &'a [&'a [f32]],
    pub relu: bool,
    pub y: &'a mut [f32],
}

impl Kernel for Add<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let Add { xs, relu: apply_relu, y } = self;
        for ((o, &a), &b) in y.iter_mut().zip(xs[0]).zip(xs[1]) {
            *o = a + b;
        }
        for x in &xs[2..] {
            for (o, &v) in y.iter_mut().zip(*x) {
                *o += v;
            }
        }
        if apply_relu {
            y.iter_mut().for_each(|v| *v = relu(*v));
        }
    }
}

pub(super) struct Relu<'a> {
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for Relu<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        for (o, &v) in self.y.iter_mut().zip(self.x) {
            *o = relu(v);
        }
    }
}

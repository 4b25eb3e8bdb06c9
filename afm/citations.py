"""The two works this tool is built on, cited the same way wherever the app names them, and the
equations the Gradient coupling page sets beside each other.

- The paper: Jun Xiao, Hao Ye, Xiangnan He, Hanwang Zhang, Fei Wu and Tat-Seng Chua,
  "Attentional Factorization Machines: Learning the Weight of Feature Interactions via
  Attention Networks", IJCAI 2017. Eq. (1)-(5) of the blog post are the paper's model.
- The blog post (in Chinese) "AFM: Attentional Factorization Machines", 2020-07-13: a reading of
  the paper whose eq. (6)-(11) argue that attention turns FM's direct gradient coupling into an
  indirect one; its AFM derivation, eq. (8)-(11), drops the softmax's cross terms.
"""

PAPER_SHORT = "Xiao et al., IJCAI 2017"
BLOG = "the blog post \"AFM: Attentional Factorization Machines\" (2020-07-13, in Chinese)"

# Eq. (8)-(11) as the blog post writes them (f is the model's output, φ(i, v_j) = ∂a'_ij/∂v_i),
# broken into short lines so they fit a narrow screen.
BLOG_EQUATIONS = [
    r"\begin{aligned}\frac{\partial L}{\partial v_i}=\;&\frac{\partial L}{\partial f}\,p\odot\sum_{j\neq i}\Big("
    r"\frac{\partial a_{ij}}{\partial v_i}(v_i\odot v_j)x_ix_j\\&+a_{ij}v_jx_ix_j\Big)\quad(8)\end{aligned}",
    r"\begin{aligned}=\;&\frac{\partial L}{\partial f}\,p\odot\Big(v_ix_i\sum_{j\neq i}\frac{\partial a_{ij}}"
    r"{\partial v_i}v_jx_j\\&+x_i\sum_{j\neq i}a_{ij}v_jx_j\Big)\quad(9)\end{aligned}",
    r"\begin{aligned}\frac{\partial a_{ij}}{\partial v_i}&=\frac{\partial a_{ij}}{\partial a'_{ij}}\frac{\partial "
    r"a'_{ij}}{\partial v_i}\\&=a_{ij}(1-a_{ij})\frac{\partial a'_{ij}}{\partial v_i}\quad(10)\end{aligned}",
    r"\begin{aligned}\frac{\partial L}{\partial v_i}=\;&\frac{\partial L}{\partial f}\,p\,x_i\odot\sum_{j\neq i}"
    r"\big(a_{ij}(1-a_{ij})\,\phi(i,v_j)\\&(v_i\odot v_j)x_j+a_{ij}v_jx_j\big)\quad(11)\end{aligned}",
]
# The exact gradient (docs/gradient_coupling.md): the full softmax Jacobian turns (1 - a_ij) s_ij
# into (s_ij - s̄), and p enters the attention term only through the scalar s_ij = pᵀ e_ij.
EXACT_EQUATIONS = [
    r"\frac{\partial L}{\partial v_i}=\ell'\sum_{j\neq i}x_ix_j\,v_j\odot c_{ij}",
    r"c_{ij}=a_{ij}\,p+a_{ij}\,(s_{ij}-\bar s)\,u_{ij}",
    r"s_{ij}=p^\top e_{ij},\quad \bar s=\textstyle\sum_{m}a_m s_m",
    r"u_{ij}=W^\top\big(h\odot\mathbf 1[We_{ij}+b>0]\big)",
]

# flexmix side of benchmarks/vs_flexmix.py (run by that script; not meant to be run alone).
#
# Usage: Rscript vs_flexmix.R DATA.csv OUT.csv INIT SEED SMOOTH K [K ...]
#   DATA.csv  columns x, y and, for every K, c<K>: gmoe's k-means labels (1-based)
#   INIT      "kmeans": start from the posterior matrix (1 - SMOOTH) * onehot(c<K>) + SMOOTH / K,
#             the same starting responsibilities gmoe builds from the same labels;
#             "random": flexmix's own default (random hard assignment, seeded with SEED)
#   OUT.csv   long format: k, key, value
# Model: FLXMRglm(gaussian) experts y ~ x, FLXPmultinom(~ x) concomitant (softmax gate),
# control minprior = 0, iter.max = 2000, tolerance = 1e-6.
# The time is the elapsed time of the flexmix() call alone (data already in memory).

suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
data_path <- args[1]
out_path <- args[2]
init <- args[3]
seed <- as.integer(args[4])
smooth <- as.numeric(args[5])
ks <- as.integer(args[-(1:5)])

d <- read.csv(data_path)
ctrl <- list(minprior = 0, iter.max = 2000, tolerance = 1e-6)

fit_one <- function(data, k, cluster) {
  flexmix(y ~ x, data = data, k = k, cluster = cluster,
          model = FLXMRglm(family = "gaussian"),
          concomitant = FLXPmultinom(~ x), control = ctrl)
}

# Warm-up on a small sample so that first-call costs (lazy loading, byte compiling)
# are not charged to the timed fits.
set.seed(seed)
invisible(try(fit_one(d[seq_len(min(nrow(d), 300)), c("x", "y")], 2, NULL), silent = TRUE))

# Conditional log-likelihood sum_n log sum_i g_i(x_n) N(y_n; b_i + a_i x_n, sd_i^2) at the
# reported parameters, computed here independently of flexmix's internal value.
cond_loglik <- function(x, y, comp, conc) {
  X <- cbind(1, x)
  eta <- X %*% conc                                  # n x k gate logits
  m <- apply(eta, 1, max)
  log_g <- eta - (m + log(rowSums(exp(eta - m))))
  mu <- X %*% comp[c("coef.(Intercept)", "coef.x"), , drop = FALSE]
  sd <- comp["sigma", ]
  lj <- log_g + dnorm(y, mean = mu, sd = rep(sd, each = length(y)), log = TRUE)
  mj <- apply(lj, 1, max)
  sum(mj + log(rowSums(exp(lj - mj))))
}

rows <- list()
put <- function(k, key, value) {
  rows[[length(rows) + 1]] <<- data.frame(k = k, key = key, value = value)
}

for (k in ks) {
  if (init == "kmeans") {
    lab <- d[[paste0("c", k)]]
    cluster <- matrix(smooth / k, nrow = nrow(d), ncol = k)
    cluster[cbind(seq_len(nrow(d)), lab)] <- 1 - smooth + smooth / k
  } else {
    cluster <- NULL
  }
  set.seed(seed + k)
  t0 <- proc.time()[["elapsed"]]
  fit <- tryCatch(fit_one(d, k, cluster), error = function(e) e)
  secs <- proc.time()[["elapsed"]] - t0
  put(k, "seconds", secs)
  if (inherits(fit, "error")) {
    message("flexmix k = ", k, " failed: ", conditionMessage(fit))
    put(k, "failed", 1)
    next
  }
  put(k, "failed", 0)
  put(k, "iter", fit@iter)
  put(k, "converged", as.numeric(fit@converged))
  put(k, "loglik", as.numeric(logLik(fit)))
  put(k, "k_final", fit@k)
  comp <- parameters(fit)
  conc <- parameters(fit, which = "concomitant")
  put(k, "loglik_recomputed", cond_loglik(d$x, d$y, comp, conc))
  for (i in seq_len(fit@k)) {
    put(k, paste0("b", i), comp["coef.(Intercept)", i])
    put(k, paste0("a", i), comp["coef.x", i])
    put(k, paste0("sd", i), comp["sigma", i])
    put(k, paste0("g0_", i), conc["(Intercept)", i])
    put(k, paste0("g1_", i), conc["x", i])
  }
}
write.csv(do.call(rbind, rows), out_path, row.names = FALSE)

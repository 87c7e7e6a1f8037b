"""The break-even paper (Jastrzebski et al., ICLR 2020), Sec. 4.3, App. H: batch normalisation
needs a high learning rate (notebook ``03_batchnorm``).

SimpleCNN-BN (BatchNorm after every layer but the last) and plain SimpleCNN on CIFAR-10,
Keras initialisation, SGD. Sweeps: eta in {0.001, 0.01, 0.1, 1.0} for SimpleCNN-BN and
{0.01, 1.0} for SimpleCNN at S = 128 (Fig. 7); S in {10, 32, 128, 512} for SimpleCNN-BN at
eta = 0.01 (App. H, Fig. 26). Along every run: ||g||/||g_5|| (the step's mini-batch gradient
against its projection on the top-5 eigenvectors of the Gram estimate of K, App. C, L = 25,
M = 128), lambda_K^1, lambda_K^*/lambda_K^1, Tr(K), lambda_H^1 (SimpleCNN-BN), ||gamma|| of
the last BN layer, training and validation accuracy.

BatchNorm mode: K and H are measured with batch statistics (train mode), as the paper's Keras
code computed them, with running statistics frozen during the measurement
(``curvature.measurement_mode``); accuracies use running statistics (eval mode);
||g||/||g_5|| uses the gradient of the SGD step itself.

``settings`` (the profile's section, validated; the paper's numbers with their sentences),
``runs`` (the three sweeps as ``common.Sweep`` objects, validated without training),
``analysis`` (run table, smoothed maxima and early changes per setting), ``claims`` (the
claims table) and ``figures`` (panels, figures and their file names). No update rule or
metric of its own: ||g||/||g_5|| and ||gamma|| are built into the recorder.
"""

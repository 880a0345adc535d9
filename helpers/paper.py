"""The numbers published in Karim & Kaur, typed once, so every chapter compares against the same values."""

from __future__ import annotations

DIGITS: tuple[int, ...] = tuple(range(10))

#: Figure 3: proportion of each digit in the training and "validation" (test) sets.
DISTRIBUTION: dict[str, tuple[float, ...]] = {
    "train": (0.16, 0.14, 0.10, 0.09, 0.09, 0.08, 0.09, 0.09, 0.07, 0.09),
    "test": (0.18, 0.13, 0.10, 0.08, 0.10, 0.08, 0.08, 0.07, 0.08, 0.09),
}
#: Section 3.1.2: number of observations.
COUNTS: dict[str, int] = {"train": 7291, "test": 2007}
#: Figure 8: per-class error rate and accuracy, in percent.
CLASS_ERROR: tuple[float, ...] = (2.8, 1.2, 2.6, 1.3, 3.5, 5.0, 2.3, 5.3, 4.2, 3.3)
CLASS_ACCURACY: tuple[float, ...] = (97.2, 98.8, 97.4, 98.7, 96.5, 95.0, 97.7, 94.7, 95.8, 96.7)
#: Section 4: the range of per-class error rates the text quotes (its Figure 8 goes to 5.3 %).
CLASS_ERROR_TEXT_MAX: float = 5.0
#: Section 3.3: overall accuracy and error rate (percent), misclassified images (Figure 9).
ACCURACY: float = 97.11
ERROR: float = 2.89
ERRORS: int = 58
#: Section 3.3: the training recipe.
EPOCHS: int = 100
BATCH_SIZE: int = 256
#: Section 4.1: the MNIST result the paper compares with (Tavanaei et al.), percent.
MNIST_COMPARISON_ACCURACY: float = 98.0

#: Published test error rates (percent) on this same split (7291 training / 2007 test images), keyed by
#: their BibTeX key in ``references.bib``: (name, error). The one list of published results.
LITERATURE: dict[str, tuple[str, float]] = {
    "lecun1989": ("LeCun et al. 1989, convolutional network", 5.0),
    "bromley1991": ("Bromley & Säckinger 1991, human readers", 2.5),
    "chaaban2007": ("Chaaban & Scheessele 2007, human readers", 2.37),
    "dahmen2001": ("Dahmen, Keysers & Ney 2001, tangent distance, virtual test samples", 2.2),
    "keysers2002": ("Keysers, Paredes, Ney & Vidal 2002, tangent vectors and local representations", 2.0),
    "karim2020": ("Karim & Kaur (the paper)", ERROR),
}
#: Human readers on this test set: the lower and the upper published error rate (percent).
HUMAN: tuple[float, float] = (LITERATURE["chaaban2007"][1], LITERATURE["bromley1991"][1])
#: The best published result on this split (the paper aside).
BEST_PUBLISHED: float = min(error for key, (_, error) in LITERATURE.items() if key != "karim2020")


def numbers() -> dict[str, float | int]:
    """The paper's own numbers under the names the chapters quote (each chapter adds them to its numbers)."""
    best, worst = max(CLASS_ACCURACY), min(CLASS_ACCURACY)
    return {"paper_accuracy": ACCURACY, "paper_error": ERROR, "paper_errors": ERRORS,
            "paper_n_train": COUNTS["train"], "paper_n_test": COUNTS["test"],
            "paper_class_min": worst, "paper_class_min_digit": CLASS_ACCURACY.index(worst),
            "paper_class_max": best, "paper_class_max_digit": CLASS_ACCURACY.index(best),
            "paper_class_err_max": max(CLASS_ERROR), "paper_text_err_min": min(CLASS_ERROR),
            "paper_text_err_max": CLASS_ERROR_TEXT_MAX,
            "paper_mnist": MNIST_COMPARISON_ACCURACY, "paper_short_of_98": MNIST_COMPARISON_ACCURACY - ACCURACY}

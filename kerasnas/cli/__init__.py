"""The command lines: absl flags -> settings -> a job (:mod:`kerasnas.jobs`)."""
